/* Placeholder translation unit: lets the harness library build before tests/support has files. */
typedef int ocb_support_empty;
