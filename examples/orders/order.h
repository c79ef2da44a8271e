/* order: an order as the order service accepts it (POST /orders), checked, and the message it
 * publishes for it: the order as compact JSON and its message attributes (order_id, customer,
 * status paid|unpaid, total as a Number) for the subscriptions' filter policies.
 *
 * order_parse fills an order_t the caller owns and frees with order_release; the attributes
 * point into the order_t itself, so it must not be copied or moved while they are used. */
#ifndef KYU_ORDER_H
#define KYU_ORDER_H

#include <kyu.h>

#include <stdbool.h>
#include <stddef.h>

#define ORDER_ID_MAX 64
#define ORDER_CUSTOMER_MAX 256
#define ORDER_ITEMS_MAX 100
#define ORDER_QTY_MAX 10000
#define ORDER_TOTAL_MAX 1e9
#define ORDER_WHY_MAX 256

typedef struct {
    char order_id[ORDER_ID_MAX + 1];
    char customer[ORDER_CUSTOMER_MAX + 1];
    char total[40]; /* the total as SQS's Number text, e.g. "12.5" */
    bool paid;
    char *body; /* what is published: the order as compact JSON (heap) */
    size_t body_len;
    kyu_msg_attrs_t attrs; /* order_id, customer, status, total: point into this order_t */
} order_t;

/* Parses and checks an order (a JSON object with exactly the fields order_id, customer, items,
 * total and paid; README of examples/orders says what each may hold). On success fills *o
 * and returns true; else returns false with why saying what is wrong ("missing field
 * 'paid'", "invalid JSON at line 1, column 9: ...") and *o holds nothing to free. */
bool order_parse(order_t *o, const char *buf, size_t len, char why[ORDER_WHY_MAX]);

/* Frees what order_parse allocated. */
void order_release(order_t *o);

#endif
