/* cli_attrs: message attributes on the command line — `kyu send --attr NAME=TYPE:VALUE` in,
 * SQS's JSON shape of them out ({name: {DataType, StringValue | BinaryValue}}). Binary values
 * are base64 both ways (libsodium's codec, the original alphabet with padding). */
#include "cli.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

bool cli_parse_attr(char *arg, cli_args_t *a, char *why, size_t why_len)
{
    if (a->attrs.n >= KYU_MSG_ATTRS_MAX) {
        snprintf(why, why_len, "a message has at most %d attributes", KYU_MSG_ATTRS_MAX);
        return false;
    }
    char *eq = strchr(arg, '=');
    char *colon = eq ? strchr(eq + 1, ':') : NULL;
    if (!eq || !colon) {
        snprintf(why, why_len, "expected NAME=TYPE:VALUE (e.g. color=String:blue)");
        return false;
    }
    kyu_msg_attr_t at = {.name = arg,
                         .name_len = (size_t)(eq - arg),
                         .type = eq + 1,
                         .type_len = (size_t)(colon - eq - 1),
                         .value = colon + 1,
                         .value_len = strlen(colon + 1)};
    at.binary = at.type_len >= 6 && memcmp(at.type, "Binary", 6) == 0;
    if (at.binary) {
        size_t cap = at.value_len / 4 * 3 + 3, len = 0;
        unsigned char *bin = malloc(cap);
        if (!bin) {
            snprintf(why, why_len, "out of memory");
            return false;
        }
        if (sodium_base642bin(bin, cap, at.value, at.value_len, NULL, &len, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0) {
            free(bin);
            snprintf(why, why_len, "a Binary value is given in base64 (with padding)");
            return false;
        }
        a->attr_bufs[a->attrs.n] = bin;
        at.value = bin;
        at.value_len = len;
    }
    a->attrs.a[a->attrs.n++] = at;
    kyu_err_t err = {0};
    if (kyu_msg_attrs_check(&a->attrs, &err) != KYU_OK) {
        snprintf(why, why_len, "%s", err.msg);
        return false;
    }
    return true;
}

void cli_args_free(cli_args_t *a)
{
    for (size_t i = 0; i < KYU_MSG_ATTRS_MAX; i++) {
        free(a->attr_bufs[i]);
        a->attr_bufs[i] = NULL;
    }
}

char *cli_base64(const void *v, size_t n)
{
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(cap);
    if (out)
        sodium_bin2base64(out, cap, v, n, sodium_base64_VARIANT_ORIGINAL);
    return out;
}

json_t *cli_attrs_json(const kyu_msg_attrs_t *attrs)
{
    json_t *obj = json_object();
    for (size_t i = 0; obj && i < attrs->n; i++) {
        const kyu_msg_attr_t *at = &attrs->a[i];
        json_t *type = json_stringn(at->type, at->type_len), *value = NULL;
        if (at->binary) {
            char *b64 = cli_base64(at->value, at->value_len);
            value = b64 ? json_string(b64) : NULL;
            free(b64);
        } else {
            value = json_stringn(at->value, at->value_len);
        }
        json_t *one = type && value ? json_pack("{s:o, s:o}", "DataType", type,
                                                at->binary ? "BinaryValue" : "StringValue", value)
                                    : NULL;
        if (!one) {
            json_decref(type);
            json_decref(value);
        }
        char name[KYU_ATTR_NAME_MAX + 1];
        memcpy(name, at->name, at->name_len);
        name[at->name_len] = '\0';
        if (!one || json_object_set_new(obj, name, one) != 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    return obj;
}
