/* order: checks an order's JSON (jansson) and builds the message published for it. */
#include "order.h"

#include <jansson.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const FIELDS[] = {"order_id", "customer", "items", "total", "paid"};
#define N_FIELDS (sizeof FIELDS / sizeof FIELDS[0])

static bool fail(char why[ORDER_WHY_MAX], const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static bool fail(char why[ORDER_WHY_MAX], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, ORDER_WHY_MAX, fmt, ap);
    va_end(ap);
    return false;
}

static bool id_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_' || ch == '.' || ch == ':';
}

static bool check_order_id(order_t *o, json_t *v, char why[ORDER_WHY_MAX])
{
    if (!json_is_string(v))
        return fail(why, "field 'order_id' must be a string");
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n < 1 || n > ORDER_ID_MAX)
        return fail(why, "field 'order_id' must be 1 to %d characters", ORDER_ID_MAX);
    for (size_t i = 0; i < n; i++)
        if (!id_char(s[i]))
            return fail(why, "field 'order_id' may hold only letters, digits, '-', '_', '.' "
                             "and ':'");
    memcpy(o->order_id, s, n + 1);
    return true;
}

static bool check_customer(order_t *o, json_t *v, char why[ORDER_WHY_MAX])
{
    if (!json_is_string(v))
        return fail(why, "field 'customer' must be a string");
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n < 1 || n > ORDER_CUSTOMER_MAX) /* jansson refuses \u0000 (no JSON_ALLOW_NUL) */
        return fail(why, "field 'customer' must be 1 to %d bytes of text", ORDER_CUSTOMER_MAX);
    memcpy(o->customer, s, n + 1);
    return true;
}

static bool check_items(json_t *v, char why[ORDER_WHY_MAX])
{
    if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > ORDER_ITEMS_MAX)
        return fail(why, "field 'items' must be an array of 1 to %d items", ORDER_ITEMS_MAX);
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item)
    {
        json_t *sku = json_object_get(item, "sku"), *qty = json_object_get(item, "qty");
        if (!json_is_object(item) || json_object_size(item) != 2 || !json_is_string(sku) ||
            json_string_length(sku) < 1 || json_string_length(sku) > 64 || !json_is_integer(qty) ||
            json_integer_value(qty) < 1 || json_integer_value(qty) > ORDER_QTY_MAX)
            return fail(why,
                        "items[%zu] must be {\"sku\": a string of 1 to 64 bytes, \"qty\": an "
                        "integer 1 to %d}",
                        i, ORDER_QTY_MAX);
    }
    return true;
}

/* The total as SQS's Number text: an integer as it is, a real with up to 15 significant
 * digits (so 12.34 stays "12.34"). */
static bool check_total(order_t *o, json_t *v, char why[ORDER_WHY_MAX])
{
    if (!json_is_number(v))
        return fail(why, "field 'total' must be a number");
    double t = json_number_value(v);
    if (!isfinite(t) || t < 0 || t > ORDER_TOTAL_MAX)
        return fail(why, "field 'total' must be 0 to %.0f", ORDER_TOTAL_MAX);
    if (json_is_integer(v)) {
        snprintf(o->total, sizeof o->total, "%lld", (long long)json_integer_value(v));
        return true;
    }
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    if (!s || strlen(s) >= sizeof o->total) {
        free(s);
        return fail(why, "field 'total' cannot be written as a number");
    }
    snprintf(o->total, sizeof o->total, "%s", s);
    free(s);
    return true;
}

static void set_attr(kyu_msg_attr_t *a, const char *name, const char *type, const char *value)
{
    a->name = name;
    a->name_len = strlen(name);
    a->type = type;
    a->type_len = strlen(type);
    a->value = value;
    a->value_len = strlen(value);
    a->binary = false;
}

static bool check_fields(order_t *o, json_t *root, char why[ORDER_WHY_MAX])
{
    if (!json_is_object(root))
        return fail(why, "an order must be a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        size_t f = 0;
        while (f < N_FIELDS && strcmp(key, FIELDS[f]) != 0)
            f++;
        if (f == N_FIELDS)
            return fail(why,
                        "unknown field '%.64s' (an order has order_id, customer, items, "
                        "total and paid)",
                        key);
    }
    for (size_t f = 0; f < N_FIELDS; f++)
        if (!json_object_get(root, FIELDS[f]))
            return fail(why, "missing field '%s'", FIELDS[f]);
    json_t *paid = json_object_get(root, "paid");
    if (!json_is_boolean(paid))
        return fail(why, "field 'paid' must be true or false");
    o->paid = json_is_true(paid);
    return check_order_id(o, json_object_get(root, "order_id"), why) &&
           check_customer(o, json_object_get(root, "customer"), why) &&
           check_items(json_object_get(root, "items"), why) &&
           check_total(o, json_object_get(root, "total"), why);
}

bool order_parse(order_t *o, const char *buf, size_t len, char why[ORDER_WHY_MAX])
{
    memset(o, 0, sizeof *o);
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fail(why, "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                    jerr.text);
    bool ok = check_fields(o, root, why);
    if (ok) {
        /* The published body: the order's fields only, in a stable order. */
        o->body = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
        if (!o->body)
            ok = fail(why, "out of memory");
        else
            o->body_len = strlen(o->body);
    }
    json_decref(root);
    if (!ok) {
        memset(o, 0, sizeof *o);
        return false;
    }
    set_attr(&o->attrs.a[0], "order_id", "String", o->order_id);
    set_attr(&o->attrs.a[1], "customer", "String", o->customer);
    set_attr(&o->attrs.a[2], "status", "String", o->paid ? "paid" : "unpaid");
    set_attr(&o->attrs.a[3], "total", "Number", o->total);
    o->attrs.n = 4;
    return true;
}

void order_release(order_t *o)
{
    free(o->body);
    o->body = NULL;
}
