/*
 * sim_certs.c: `--make-certs DIR`, a private CA with one server and one client certificate.
 *
 * The platform's test environments use exactly this shape (a private CA signing both the server
 * certificate and the one client certificate every application presents, §4.4), and other tests
 * reuse the files for the bridge's own TLS listener, so the certificates are deliberately
 * standard: EC P-256 keys in PKCS#8 PEM, SHA-256 signatures, v3 extensions, 10-year validity.
 *   ca.pem                 CA:TRUE, keyCertSign/cRLSign
 *   server.pem/-key.pem    SAN DNS:localhost, IP:127.0.0.1; EKU serverAuth
 *   client.pem/-key.pem    EKU clientAuth
 * Called once from main before any thread starts.
 */
#include "sim.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VALID_DAYS (3650L)

static void ssl_err(char *err, size_t errlen, const char *what)
{
    char buf[256] = "";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    snprintf(err, errlen, "%s failed%s%s", what, buf[0] ? ": " : "", buf);
    ERR_clear_error();
}

static bool add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return false;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1;
}

static bool set_serial(X509 *cert)
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return false;
    raw[0] &= 0x7f; /* positive */
    BIGNUM *bn = BN_bin2bn(raw, sizeof raw, NULL);
    bool ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
    BN_free(bn);
    return ok;
}

struct ext_spec {
    int nid;
    const char *value;
};

/* Make a certificate for key signed by (issuer, issuer_key); issuer NULL = self-signed. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       const struct ext_spec *exts, size_t nexts)
{
    X509 *cert = X509_new();
    if (!cert)
        return NULL;
    X509_NAME *name = X509_get_subject_name(cert);
    bool ok = X509_set_version(cert, 2) == 1 && set_serial(cert) &&
              X509_time_adj_ex(X509_getm_notBefore(cert), 0, -3600, NULL) &&
              X509_time_adj_ex(X509_getm_notAfter(cert), VALID_DAYS, 0, NULL) &&
              X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                         (const unsigned char *)"ocbridge-sim", -1, -1, 0) == 1 &&
              X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
                                         -1, 0) == 1 &&
              X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name) == 1 &&
              X509_set_pubkey(cert, key) == 1;
    for (size_t i = 0; ok && i < nexts; i++)
        ok = add_ext(cert, issuer ? issuer : cert, exts[i].nid, exts[i].value);
    if (ok)
        ok = X509_sign(cert, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

static bool write_pem(const char *dir, const char *file, X509 *cert, EVP_PKEY *key)
{
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= sizeof path)
        return false;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, key ? 0600 : 0644);
    if (fd < 0)
        return false;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return false;
    }
    bool ok = cert ? PEM_write_X509(f, cert) == 1
                   : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
    if (fclose(f) != 0)
        ok = false;
    return ok;
}

enum ocb_err sim_certs_make(const char *dir, char *err, size_t errlen)
{
    enum ocb_err rc = OCB_ERR_TLS;
    EVP_PKEY *ca_key = NULL, *srv_key = NULL, *cli_key = NULL;
    X509 *ca = NULL, *srv = NULL, *cli = NULL;

    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        char eb[128];
        strerror_r(errno, eb, sizeof eb);
        snprintf(err, errlen, "cannot create %s: %s", dir, eb);
        return OCB_ERR_IO;
    }
    ca_key = EVP_EC_gen("P-256");
    srv_key = EVP_EC_gen("P-256");
    cli_key = EVP_EC_gen("P-256");
    if (!ca_key || !srv_key || !cli_key) {
        ssl_err(err, errlen, "key generation");
        goto out;
    }
    static const struct ext_spec ca_ext[] = {
        {NID_basic_constraints, "critical,CA:TRUE"},
        {NID_key_usage, "critical,keyCertSign,cRLSign"},
        {NID_subject_key_identifier, "hash"},
    };
    static const struct ext_spec srv_ext[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "serverAuth"},
        {NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
    };
    static const struct ext_spec cli_ext[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "clientAuth"},
        {NID_subject_key_identifier, "hash"},
        {NID_authority_key_identifier, "keyid:always"},
    };
    ca = make_cert(ca_key, "ocbridge-sim CA", NULL, NULL, ca_ext, 3);
    if (!ca) {
        ssl_err(err, errlen, "CA certificate");
        goto out;
    }
    srv = make_cert(srv_key, "localhost", ca, ca_key, srv_ext, 6);
    cli = make_cert(cli_key, "ocbridge-client", ca, ca_key, cli_ext, 5);
    if (!srv || !cli) {
        ssl_err(err, errlen, "leaf certificate");
        goto out;
    }
    rc = OCB_ERR_IO;
    if (!write_pem(dir, "ca.pem", ca, NULL) || !write_pem(dir, "server.pem", srv, NULL) ||
        !write_pem(dir, "server-key.pem", NULL, srv_key) ||
        !write_pem(dir, "client.pem", cli, NULL) ||
        !write_pem(dir, "client-key.pem", NULL, cli_key)) {
        snprintf(err, errlen, "cannot write certificates into %s", dir);
        goto out;
    }
    rc = OCB_OK;
out:
    X509_free(ca);
    X509_free(srv);
    X509_free(cli);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(cli_key);
    return rc;
}
