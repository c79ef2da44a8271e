/* libFuzzer harness for filter policies (proto/filter.c): any bytes as a policy must compile
 * or be refused with INVALID_ARGUMENT, never crash, abort or leak; a compiled policy's
 * canonical text compiles again to itself; matching any message (body or attributes) returns.
 * Input: byte 0 the scope (low bit: attributes or body; bit 1: a Lambda event pattern, whose
 * document is the body), then the policy, a NUL, the message body, and after a
 * second NUL up to 3 attributes as "name\ttype\tvalue" lines. Built with -DKYU_FUZZ=ON (clang);
 * replay.c runs the stored corpus (corpus/filter) through it in ordinary test runs. */
#include "filter.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *split(const char *p, const char *end, char c)
{
    const char *q = memchr(p, c, (size_t)(end - p));
    return q ? q : end;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    kyu_filter_scope_t scope =
        data[0] & 2 ? KYU_FILTER_SCOPE_EVENT : (kyu_filter_scope_t)(data[0] & 1);
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    const char *pe = split(p, end, '\0');
    const char *body = pe < end ? pe + 1 : end;
    const char *be = split(body, end, '\0');
    kyu_filter_t *f;
    char *canon;
    kyu_err_t err;
    kyu_err_clear(&err);
    kyu_code_t rc = kyu_filter_compile(p, (size_t)(pe - p), scope, &f, &canon, &err);
    if (rc != KYU_OK) {
        KYU_ASSERT(rc == KYU_ERR_INVALID_ARGUMENT && !f && !canon);
        return 0;
    }
    kyu_filter_t *g;
    char *canon2;
    KYU_ASSERT(kyu_filter_compile(canon, strlen(canon), scope, &g, &canon2, &err) == KYU_OK);
    KYU_ASSERT(strcmp(canon, canon2) == 0);
    kyu_msg_attrs_t attrs = {0};
    const char *a = be < end ? be + 1 : end;
    while (a < end && attrs.n < 3) {
        const char *le = split(a, end, '\n');
        const char *t1 = split(a, le, '\t');
        const char *t2 = t1 < le ? split(t1 + 1, le, '\t') : le;
        if (t2 < le) {
            kyu_msg_attr_t *at = &attrs.a[attrs.n++];
            at->name = a;
            at->name_len = (size_t)(t1 - a);
            at->type = t1 + 1;
            at->type_len = (size_t)(t2 - t1 - 1);
            at->value = t2 + 1;
            at->value_len = (size_t)(le - t2 - 1);
            at->binary = at->type_len >= 6 && !memcmp(at->type, "Binary", 6);
        }
        a = le < end ? le + 1 : end;
    }
    bool m1 = kyu_filter_match(f, &attrs, body, (size_t)(be - body));
    bool m2 = kyu_filter_match(g, &attrs, body, (size_t)(be - body));
    KYU_ASSERT(m1 == m2); /* the canonical policy means the same */
    kyu_filter_destroy(&f);
    kyu_filter_destroy(&g);
    free(canon);
    free(canon2);
    return 0;
}
