/* filter: SNS subscription filter policies and Lambda event patterns; see filter.h. The compiled
 * form is the checked JSON tree itself (jansson): kyu_filter_compile refuses what SNS refuses, so
 * matching walks a tree whose shape is known. */
#include "filter.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct kyu_filter {
    json_t *policy;
    kyu_filter_scope_t scope;
};

#define NUM_MAX 1e9

const char *kyu_filter_scope_name(kyu_filter_scope_t scope)
{
    return scope == KYU_FILTER_SCOPE_BODY ? "body" : "attributes";
}

int kyu_filter_scope_parse(const char *name)
{
    if (!strcmp(name, "attributes") || !strcmp(name, "MessageAttributes"))
        return KYU_FILTER_SCOPE_ATTRIBUTES;
    if (!strcmp(name, "body") || !strcmp(name, "MessageBody"))
        return KYU_FILTER_SCOPE_BODY;
    return -1;
}

/* ---- checking ---- */

static kyu_code_t bad(kyu_err_t *err, const char *key, const char *what)
{
    return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "filter policy: key '%s': %s", key, what);
}

static bool num_ok(const json_t *v)
{
    return json_is_number(v) && fabs(json_number_value(v)) <= NUM_MAX;
}

static bool parse_cidr(const char *s, int *family, unsigned char addr[16], unsigned *bits)
{
    char ip[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof ip)
        return false;
    memcpy(ip, s, n);
    ip[n] = '\0';
    *family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(*family, ip, addr) != 1)
        return false;
    unsigned max = *family == AF_INET ? 32 : 128;
    *bits = max;
    if (slash) {
        char *end;
        unsigned long b = strtoul(slash + 1, &end, 10);
        if (slash[1] < '0' || slash[1] > '9' || *end || b > max)
            return false;
        *bits = (unsigned)b;
    }
    return true;
}

static kyu_code_t check_numeric(const char *key, const json_t *a, kyu_err_t *err)
{
    size_t n = json_is_array(a) ? json_array_size(a) : 0;
    if (n != 2 && n != 4)
        return bad(err, key, "numeric takes [op, number] or [>/>=, number, </<=, number]");
    double lo = 0;
    for (size_t i = 0; i < n; i += 2) {
        const json_t *op = json_array_get(a, i), *v = json_array_get(a, i + 1);
        const char *o = json_string_value(op);
        if (!o || (strcmp(o, "=") && strcmp(o, "<") && strcmp(o, "<=") && strcmp(o, ">") &&
                   strcmp(o, ">=")))
            return bad(err, key, "numeric's operators are =, <, <=, >, >=");
        if (!num_ok(v))
            return bad(err, key, "numeric's values are numbers from -1e9 to 1e9");
        if (n == 4 && i == 0 && o[0] != '>')
            return bad(err, key, "a numeric range starts with > or >=");
        if (n == 4 && i == 2 && (o[0] != '<' || json_number_value(v) <= lo))
            return bad(err, key, "a numeric range ends with < or <= a greater number");
        lo = json_number_value(v);
    }
    return KYU_OK;
}

static kyu_code_t check_cond(const char *key, const json_t *c, kyu_filter_scope_t scope,
                             kyu_err_t *err)
{
    if (json_is_string(c) || json_is_boolean(c) || (json_is_null(c) && scope))
        return KYU_OK;
    if (json_is_number(c))
        return num_ok(c) ? KYU_OK : bad(err, key, "numbers are from -1e9 to 1e9");
    if (!json_is_object(c) || json_object_size(c) != 1)
        return bad(err, key, "a condition is a string, a number or an object of one operator");
    const char *op = json_object_iter_key(json_object_iter((json_t *)c));
    const json_t *a = json_object_get(c, op);
    if (!strcmp(op, "prefix") || !strcmp(op, "suffix") || !strcmp(op, "equals-ignore-case"))
        return json_is_string(a) && json_string_length(a) > 0
                   ? KYU_OK
                   : bad(err, key, "prefix, suffix and equals-ignore-case take a non-empty string");
    if (!strcmp(op, "exists"))
        return json_is_boolean(a) ? KYU_OK : bad(err, key, "exists takes true or false");
    if (!strcmp(op, "numeric"))
        return check_numeric(key, a, err);
    if (!strcmp(op, "cidr")) {
        int f;
        unsigned char ad[16];
        unsigned b;
        return json_is_string(a) && parse_cidr(json_string_value(a), &f, ad, &b)
                   ? KYU_OK
                   : bad(err, key, "cidr takes an IP address or prefix (10.0.0.0/24)");
    }
    if (!strcmp(op, "anything-but")) {
        if (json_is_string(a) || num_ok(a))
            return KYU_OK;
        if (json_is_array(a) && json_array_size(a) > 0) {
            size_t i;
            const json_t *e;
            json_array_foreach(a, i, e) if (!json_is_string(e) && !num_ok(e)) return bad(
                err, key, "anything-but's list holds strings and numbers");
            return KYU_OK;
        }
        if (json_is_object(a) && json_object_size(a) == 1) {
            const json_t *p = json_object_get(a, "prefix"), *s = json_object_get(a, "suffix");
            const json_t *v = p ? p : s;
            if (v && json_is_string(v) && json_string_length(v) > 0)
                return KYU_OK;
        }
        return bad(err, key,
                   "anything-but takes a value, a list of values, {\"prefix\": s} or "
                   "{\"suffix\": s}");
    }
    return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                       "filter policy: key '%s': unknown operator '%s'", key, op);
}

/* Checks one policy object; *keys counts its leaf keys, *combos its value combinations. */
static kyu_code_t check_obj(const json_t *o, kyu_filter_scope_t scope, int depth, size_t *keys,
                            double *combos, kyu_err_t *err)
{
    if (depth > KYU_FILTER_DEPTH_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "filter policy: nested too deep");
    if (!json_is_object(o) || json_object_size(o) == 0)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "filter policy: a policy is a non-empty JSON object");
    *combos = 1;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        double c = 0;
        if (!strcmp(k, "$or")) {
            if (!json_is_array(v) || json_array_size(v) < 2)
                return bad(err, k, "$or takes a list of at least 2 policies");
            size_t i;
            const json_t *e;
            json_array_foreach(v, i, e)
            {
                double ce;
                kyu_code_t rc = check_obj(e, scope, depth + 1, keys, &ce, err);
                if (rc != KYU_OK)
                    return rc;
                c += ce;
            }
        } else if (json_is_object(v)) {
            if (scope == KYU_FILTER_SCOPE_ATTRIBUTES)
                return bad(err, k, "nested keys need the body scope (--filter-scope body)");
            kyu_code_t rc = check_obj(v, scope, depth + 1, keys, &c, err);
            if (rc != KYU_OK)
                return rc;
        } else if (json_is_array(v) && json_array_size(v) > 0) {
            size_t i;
            const json_t *e;
            json_array_foreach(v, i, e)
            {
                kyu_code_t rc = check_cond(k, e, scope, err);
                if (rc != KYU_OK)
                    return rc;
            }
            c = (double)json_array_size(v);
            ++*keys;
        } else {
            return bad(err, k, "its value must be a non-empty list of conditions");
        }
        *combos *= c;
    }
    return KYU_OK;
}

kyu_code_t kyu_filter_compile(const char *json, size_t len, kyu_filter_scope_t scope,
                              kyu_filter_t **out, char **canonical, kyu_err_t *err)
{
    *out = NULL;
    if (canonical)
        *canonical = NULL;
    if (scope != KYU_FILTER_SCOPE_ATTRIBUTES && scope != KYU_FILTER_SCOPE_BODY &&
        scope != KYU_FILTER_SCOPE_EVENT)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "filter policy: unknown scope %d",
                           (int)scope);
    bool event = scope == KYU_FILTER_SCOPE_EVENT;
    if (event && len > KYU_FILTER_PATTERN_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "filter pattern: %zu bytes, more than %d (Lambda's limit)", len,
                           KYU_FILTER_PATTERN_MAX);
    if (len > KYU_FILTER_POLICY_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "filter policy: %zu bytes, more than %d (256 KB)", len,
                           KYU_FILTER_POLICY_MAX);
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "filter policy: not JSON: %s (at %d)",
                           je.text, je.position);
    size_t keys = 0;
    double combos = 0;
    kyu_code_t rc = check_obj(root, scope, 0, &keys, &combos, err);
    if (rc == KYU_OK && !event && keys > KYU_FILTER_KEYS_MAX)
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "filter policy: %zu keys, more than %d",
                         keys, KYU_FILTER_KEYS_MAX);
    if (rc == KYU_OK && !event && combos > KYU_FILTER_COMBINATIONS_MAX)
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "filter policy: %.0f value combinations, more than %d", combos,
                         KYU_FILTER_COMBINATIONS_MAX);
    kyu_filter_t *f = rc == KYU_OK ? malloc(sizeof *f) : NULL;
    if (rc == KYU_OK && !f)
        rc = kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    if (rc == KYU_OK && canonical &&
        !(*canonical = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)))
        rc = kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    if (rc != KYU_OK) {
        free(f);
        json_decref(root);
        return rc;
    }
    f->policy = root;
    f->scope = scope;
    *out = f;
    return KYU_OK;
}

void kyu_filter_destroy(kyu_filter_t **self)
{
    if (self && *self) {
        json_decref((*self)->policy);
        free(*self);
        *self = NULL;
    }
}

/* ---- matching ---- */

static bool num_eq(double a, double b)
{
    return fabs(a - b) < 5e-6; /* SNS: 5 decimal digits */
}

static bool value_eq(const json_t *c, const json_t *v)
{
    if (json_is_string(c))
        return json_is_string(v) && json_string_length(c) == json_string_length(v) &&
               !memcmp(json_string_value(c), json_string_value(v), json_string_length(c));
    if (json_is_number(c))
        return json_is_number(v) && num_eq(json_number_value(c), json_number_value(v));
    if (json_is_boolean(c))
        return json_is_boolean(v) && json_is_true(c) == json_is_true(v);
    return json_is_null(c) && json_is_null(v);
}

static bool has_prefix(const json_t *v, const char *p)
{
    return json_is_string(v) && !strncmp(json_string_value(v), p, strlen(p));
}

static bool has_suffix(const json_t *v, const char *s)
{
    if (!json_is_string(v))
        return false;
    size_t n = json_string_length(v), m = strlen(s);
    return n >= m && !memcmp(json_string_value(v) + n - m, s, m);
}

static bool numeric_ok(const json_t *a, double x)
{
    for (size_t i = 0; i < json_array_size(a); i += 2) {
        const char *o = json_string_value(json_array_get(a, i));
        double y = json_number_value(json_array_get(a, i + 1));
        bool ok = !strcmp(o, "=")    ? num_eq(x, y)
                  : !strcmp(o, "<")  ? x < y && !num_eq(x, y)
                  : !strcmp(o, "<=") ? x <= y || num_eq(x, y)
                  : !strcmp(o, ">")  ? x > y && !num_eq(x, y)
                                     : x >= y || num_eq(x, y);
        if (!ok)
            return false;
    }
    return true;
}

static bool cidr_ok(const char *cidr, const char *ip)
{
    int f, g;
    unsigned char net[16], addr[16];
    unsigned bits, b2;
    if (!parse_cidr(cidr, &f, net, &bits) || strchr(ip, '/') || !parse_cidr(ip, &g, addr, &b2) ||
        f != g)
        return false;
    for (unsigned i = 0; i < bits; i++)
        if (((net[i / 8] ^ addr[i / 8]) >> (7 - i % 8)) & 1)
            return false;
    return true;
}

/* One condition (not exists) against one present, non-array value. */
static bool cond_match(const json_t *c, const json_t *v)
{
    if (!json_is_object(c))
        return value_eq(c, v);
    const char *op = json_object_iter_key(json_object_iter((json_t *)c));
    const json_t *a = json_object_get(c, op);
    if (!strcmp(op, "prefix"))
        return has_prefix(v, json_string_value(a));
    if (!strcmp(op, "suffix"))
        return has_suffix(v, json_string_value(a));
    if (!strcmp(op, "equals-ignore-case"))
        return json_is_string(v) && json_string_length(v) == json_string_length(a) &&
               !strcasecmp(json_string_value(v), json_string_value(a));
    if (!strcmp(op, "numeric"))
        return json_is_number(v) && numeric_ok(a, json_number_value(v));
    if (!strcmp(op, "cidr"))
        return json_is_string(v) && cidr_ok(json_string_value(a), json_string_value(v));
    /* anything-but */
    if (json_is_object(a)) {
        const json_t *p = json_object_get(a, "prefix");
        return json_is_string(v) &&
               (p ? !has_prefix(v, json_string_value(p))
                  : !has_suffix(v, json_string_value(json_object_get(a, "suffix"))));
    }
    if (!json_is_array(a))
        return !value_eq(a, v);
    size_t i;
    const json_t *e;
    json_array_foreach(a, i, e) if (value_eq(e, v)) return false;
    return true;
}

/* A key's conditions against its value: v NULL when absent; present but unmatchable (a
 * Binary attribute): v NULL and present true. An array value matches when an element does. */
static bool leaf_match(const json_t *conds, const json_t *v, bool present)
{
    size_t i;
    const json_t *c;
    json_array_foreach(conds, i, c)
    {
        const json_t *ex = json_is_object(c) ? json_object_get(c, "exists") : NULL;
        if (ex) {
            if (json_is_true(ex) == present)
                return true;
            continue;
        }
        if (!v)
            continue;
        if (json_is_array(v)) {
            size_t j;
            const json_t *e;
            json_array_foreach(v, j, e) if (cond_match(c, e)) return true;
        } else if (cond_match(c, v)) {
            return true;
        }
    }
    return false;
}

/* An attribute as a JSON value: String a string (String.Array a parsed array), Number a
 * number; NULL for Binary or a value that is not its type's (the caller frees it). */
static json_t *attr_value(const kyu_msg_attr_t *a)
{
    if (a->binary)
        return NULL;
    if (a->type_len >= 6 && !strncmp(a->type, "Number", 6)) {
        char buf[64];
        if (a->value_len == 0 || a->value_len >= sizeof buf)
            return NULL;
        memcpy(buf, a->value, a->value_len);
        buf[a->value_len] = '\0';
        char *end;
        double d = strtod(buf, &end);
        return *end || !isfinite(d) ? NULL : json_real(d);
    }
    if (a->type_len == 12 && !strncmp(a->type, "String.Array", 12)) {
        json_t *arr = json_loadb(a->value, a->value_len, 0, NULL);
        if (json_is_array(arr))
            return arr;
        json_decref(arr);
        return NULL;
    }
    return json_stringn(a->value, a->value_len);
}

static bool obj_match(const json_t *pol, const json_t *ctx, const kyu_msg_attrs_t *attrs)
{
    const char *k;
    const json_t *c;
    json_object_foreach((json_t *)pol, k, c)
    {
        bool ok = false;
        if (!strcmp(k, "$or")) {
            size_t i;
            const json_t *e;
            json_array_foreach(c, i, e) if ((ok = obj_match(e, ctx, attrs))) break;
        } else if (json_is_object(c)) {
            const json_t *child = json_object_get(ctx, k);
            ok = obj_match(c, json_is_object(child) ? child : NULL, NULL);
        } else if (attrs) {
            const kyu_msg_attr_t *a = NULL;
            for (size_t i = 0; i < attrs->n && !a; i++)
                if (attrs->a[i].name_len == strlen(k) &&
                    !memcmp(attrs->a[i].name, k, attrs->a[i].name_len))
                    a = &attrs->a[i];
            json_t *v = a ? attr_value(a) : NULL;
            ok = leaf_match(c, v, a != NULL);
            json_decref(v);
        } else {
            const json_t *v = ctx ? json_object_get(ctx, k) : NULL;
            ok = leaf_match(c, v, v != NULL);
        }
        if (!ok)
            return false;
    }
    return true;
}

bool kyu_filter_match(const kyu_filter_t *self, const kyu_msg_attrs_t *attrs, const void *body,
                      size_t body_len)
{
    if (!self)
        return true;
    if (self->scope == KYU_FILTER_SCOPE_ATTRIBUTES) {
        const kyu_msg_attrs_t none = {0};
        return obj_match(self->policy, NULL, attrs ? attrs : &none);
    }
    json_t *doc = json_loadb(body, body_len, JSON_DECODE_ANY, NULL);
    bool ok = json_is_object(doc) && obj_match(self->policy, doc, NULL);
    json_decref(doc);
    return ok;
}

bool kyu_filter_match_json(const kyu_filter_t *self, const json_t *doc)
{
    if (!self)
        return true;
    return json_is_object(doc) && obj_match(self->policy, doc, NULL);
}
