/*
 * list.h: one intrusive doubly-linked list for every module.
 *
 * A list is a `struct ocb_list` head; an element embeds a `struct ocb_list`
 * member and is found from it with ocb_list_entry() (container_of).  The
 * list is circular around its head, so an empty list is a head pointing at
 * itself and no operation has a special case for the first or last element:
 * push, remove and pop are O(1) and never allocate.
 *
 * Contract:
 *   - A head must be initialised (ocb_list_init() or OCB_LIST_HEAD_INIT)
 *     before use.  A member need not be: push writes it.
 *   - A member is on at most one list at a time.  ocb_list_remove() leaves
 *     it pointing at itself, so ocb_list_linked() tells whether it is on a
 *     list (for a member that was initialised or pushed once) and removing it
 *     again is harmless.
 *   - The list owns nothing: who allocates and frees the elements, and which
 *     lock guards the list, is the containing module's contract.
 *   - ocb_list_for_each() must not see the current element removed;
 *     ocb_list_for_each_safe() may remove (and free) the current one, not
 *     others.
 *
 * Threads: none of its own; no locking.  Pure, static inline.
 */
#ifndef OCB_LIST_H
#define OCB_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct ocb_list {
    struct ocb_list *prev, *next;
};

/* Static initialiser of a head named name: struct ocb_list l = OCB_LIST_HEAD_INIT(l); */
#define OCB_LIST_HEAD_INIT(name)                                                                   \
    {                                                                                              \
        &(name), &(name)                                                                           \
    }

/* The element of type type whose member member is at ptr. */
#define ocb_list_entry(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* pos (a struct ocb_list *) over every member of head, front to back. */
#define ocb_list_for_each(pos, head)                                                               \
    for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

/* The same, back to front. */
#define ocb_list_for_each_reverse(pos, head)                                                       \
    for ((pos) = (head)->prev; (pos) != (head); (pos) = (pos)->prev)

/* Front to back; the body may remove (and free) pos: tmp holds the next one. */
#define ocb_list_for_each_safe(pos, tmp, head)                                                     \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);                               \
         (pos) = (tmp), (tmp) = (pos)->next)

static inline void ocb_list_init(struct ocb_list *l)
{
    l->prev = l;
    l->next = l;
}

static inline bool ocb_list_empty(const struct ocb_list *l)
{
    return l->next == l;
}

/* True when n is on a list (n initialised, or pushed once and maybe removed since). */
static inline bool ocb_list_linked(const struct ocb_list *n)
{
    return n->next != n;
}

static inline void ocb_list_insert_between(struct ocb_list *n, struct ocb_list *prev,
                                           struct ocb_list *next)
{
    n->prev = prev;
    n->next = next;
    prev->next = n;
    next->prev = n;
}

static inline void ocb_list_push_back(struct ocb_list *l, struct ocb_list *n)
{
    ocb_list_insert_between(n, l->prev, l);
}

static inline void ocb_list_push_front(struct ocb_list *l, struct ocb_list *n)
{
    ocb_list_insert_between(n, l, l->next);
}

/* Unlink n from its list (a no-op when it is on none, see the contract). */
static inline void ocb_list_remove(struct ocb_list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n;
    n->next = n;
}

/* Move every member of src, in order, to the back of dst (O(1)); src is left empty. */
static inline void ocb_list_splice_back(struct ocb_list *dst, struct ocb_list *src)
{
    if (ocb_list_empty(src))
        return;
    src->next->prev = dst->prev;
    dst->prev->next = src->next;
    src->prev->next = dst;
    dst->prev = src->prev;
    ocb_list_init(src);
}

/* The first member, or NULL when l is empty. */
static inline struct ocb_list *ocb_list_front(const struct ocb_list *l)
{
    return ocb_list_empty(l) ? NULL : l->next;
}

/* The last member, or NULL when l is empty. */
static inline struct ocb_list *ocb_list_back(const struct ocb_list *l)
{
    return ocb_list_empty(l) ? NULL : l->prev;
}

/* Unlink and return the first member, or NULL when l is empty. */
static inline struct ocb_list *ocb_list_pop_front(struct ocb_list *l)
{
    struct ocb_list *n = ocb_list_front(l);

    if (n != NULL)
        ocb_list_remove(n);
    return n;
}

#endif
