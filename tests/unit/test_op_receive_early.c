/* A receive answered before its lease is durable (broker/op_receive_early.c): the choice
 * leaves the index as it was, apply records exactly the leases answered, and skips a message
 * an entry applied before it deleted, purged or leased. The leader's overlay, which keeps
 * that from happening on the leader: tests/unit/test_replica.c. */
#include "command.h"
#include "fixture.h"
#include "ops.h"

#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* a command time, ms */

static void with_key(fixture_t *f)
{
    kyu_command_t c;
    kyu_command_init(&c);
    c.type = KYU_CMD_SET_HANDLE_KEY;
    c.vt = -1;
    c.now_ms = T0;
    kyu_op_handle_key_build(&c);
    ok(apply1(f, c));
}

/* A queue "q" holding the given bodies, sent at T0, and the handle key. */
static void queue_with(fixture_t *f, const char *const *bodies)
{
    with_key(f);
    ok(apply1(f, cmd_create("q", 30)));
    for (size_t i = 0; bodies[i]; i++)
        ok(apply1(f, cmd_send("q", T0, bodies[i])));
}

static kyu_held_t hold_none(void *arg, uint64_t qid, uint64_t seq)
{
    (void)arg, (void)qid, (void)seq;
    return KYU_HELD_NO;
}

/* The seqs in the array arg points to (0-terminated) are leased early. */
static kyu_held_t hold_listed(void *arg, uint64_t qid, uint64_t seq)
{
    (void)qid;
    for (const uint64_t *s = arg; *s; s++)
        if (*s == seq)
            return KYU_HELD_TAKEN;
    return KYU_HELD_NO;
}

/* ... named by a DELETE or CHANGE_VISIBILITY in flight. */
static kyu_held_t hold_named(void *arg, uint64_t qid, uint64_t seq)
{
    return hold_listed(arg, qid, seq) ? KYU_HELD_STAYS : KYU_HELD_NO;
}

/* The early RECEIVE of up to max messages of "q" at now (vt 60 s); its answer in *res. */
static kyu_command_t choose(fixture_t *f, uint64_t now, uint32_t max, kyu_sm_held_fn held,
                            void *arg, kyu_result_t *res, bool expect)
{
    kyu_command_t c = cmd_receive("q", now, max, 60);
    kyu_err_t err;
    bool got =
        kyu_sm_receive_choose(f->sm, &c, kyu_sm_applied_term(f->sm), 0, held, arg, res, &err);
    if (got != expect)
        fail_msg("expected the choice to %s, it did %s", expect ? "find messages" : "refuse",
                 got ? "find some" : "not");
    return c;
}

static const char *body_of(const kyu_result_t *r, size_t i)
{
    static char b[64];
    snprintf(b, sizeof b, "%.*s", (int)r->body_lens[i], (const char *)r->bodies[i]);
    return b;
}

static void test_an_early_receive_records_exactly_the_leases_it_answered(void **state)
{
    fixture_t *f = *state;
    queue_with(f, (const char *[]){"a", "b", "c", NULL});
    kyu_result_t res;
    kyu_command_t c = choose(f, T0 + 5, 2, hold_none, NULL, &res, true);
    assert_int_equal(res.n_msgs, 2);
    assert_string_equal(body_of(&res, 0), "a");
    assert_string_equal(body_of(&res, 1), "b");
    assert_int_equal(res.msgs[0].receive_count, 1);
    assert_int_equal(res.msgs[0].first_receive_ms, T0 + 5);
    char handle[KYU_HANDLE_MAX + 1];
    memcpy(handle, res.msgs[0].handle, sizeof handle);
    kyu_result_clear(&res);
    /* applied as the log holds it (encoded and decoded): both recorded */
    kyu_result_t r = apply1(f, c);
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_results, 2);
    assert_int_equal(r.results[0], KYU_OK);
    assert_int_equal(r.results[1], KYU_OK);
    kyu_result_clear(&r);
    /* a and b are leased: a durable receive finds c; a's early handle deletes it */
    got_t g = fixture_receive(f, "q", T0 + 10, 10, 60);
    assert_string_equal(got_bodies(&g), "c");
    r = apply1(f, cmd_delete("q", T0 + 11, handle));
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
    /* when the leases run out, b comes back with the count and first receive the answer had */
    g = fixture_receive(f, "q", T0 + 5 + 60000, 10, 60);
    assert_string_equal(got_bodies(&g), "b");
}

static void test_the_choice_leaves_the_index_as_it_was(void **state)
{
    fixture_t *f = *state;
    queue_with(f, (const char *[]){"a", "b", "c", NULL});
    got_t g = fixture_receive(f, "q", T0 + 1, 1, 0); /* a: leased for 0 s, due again */
    assert_string_equal(got_bodies(&g), "a");
    kyu_result_t res;
    choose(f, T0 + 2, 3, hold_none, NULL, &res, true);
    assert_int_equal(res.n_msgs, 3);
    kyu_result_clear(&res); /* never proposed */
    g = fixture_receive(f, "q", T0 + 3, 10, 60);
    assert_string_equal(got_bodies(&g), "a b c");
}

static void test_held_messages_are_not_chosen(void **state)
{
    fixture_t *f = *state;
    queue_with(f, (const char *[]){"a", "b", "c", "d", NULL});
    kyu_result_t r1, r2;
    kyu_command_t c1 = choose(f, T0 + 1, 2, hold_none, NULL, &r1, true);
    uint64_t held[3] = {c1.chosen_seq[0], c1.chosen_seq[1], 0};
    kyu_command_t c2 = choose(f, T0 + 2, 10, hold_listed, held, &r2, true);
    assert_int_equal(r2.n_msgs, 2);
    assert_string_equal(body_of(&r2, 0), "c");
    assert_string_equal(body_of(&r2, 1), "d");
    kyu_result_clear(&r1);
    kyu_result_clear(&r2);
    kyu_command_t both[2] = {c1, c2};
    kyu_result_t rs[2];
    apply_entry(f, both, 2, rs);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rs[i].n_results, 2);
        assert_int_equal(rs[i].results[0], KYU_OK);
        assert_int_equal(rs[i].results[1], KYU_OK);
        kyu_result_clear(&rs[i]);
    }
    got_t g = fixture_receive(f, "q", T0 + 3, 10, 60);
    assert_int_equal(g.n, 0);
}

/* A never-received message that a DELETE or CHANGE_VISIBILITY in flight names stays first
 * among the fresh ones (a handle cannot change it); apply takes fresh messages from the
 * front, so none past it is chosen (found by kyu-sim-kyu, seed 9). */
static void test_no_fresh_message_is_chosen_past_one_a_delete_names(void **state)
{
    fixture_t *f = *state;
    queue_with(f, (const char *[]){"a", "b", "c", NULL});
    got_t g = fixture_receive(f, "q", T0 + 1, 1, 60); /* a: leased, not fresh */
    kyu_result_t res;
    kyu_command_t c = choose(f, T0 + 2, 2, hold_none, NULL, &res, true); /* b c */
    uint64_t named[2] = {c.chosen_seq[0], 0};
    kyu_result_clear(&res);
    choose(f, T0 + 2, 2, hold_named, named, &res, false); /* b named: neither b nor c */
    (void)g;
}

/* What the leader's overlay prevents, applied anyway (as on a replica, deterministically):
 * a message an entry before it leased is skipped, keeping that lease. */
static void test_apply_skips_a_message_an_earlier_entry_leased(void **state)
{
    fixture_t *f = *state;
    queue_with(f, (const char *[]){"a", "b", NULL});
    kyu_result_t res;
    kyu_command_t c = choose(f, T0 + 1, 1, hold_none, NULL, &res, true); /* a */
    kyu_result_clear(&res);
    got_t g = fixture_receive(f, "q", T0 + 2, 1, 60); /* a, durably, first */
    assert_string_equal(got_bodies(&g), "a");
    kyu_result_t r = apply1(f, c);
    assert_int_equal(r.n_results, 1);
    assert_int_equal(r.results[0], KYU_ERR_RECEIPT_STALE);
    kyu_result_clear(&r);
    kyu_queue_attrs_t at = fixture_attrs(f, "q", T0 + 3);
    assert_int_equal(at.not_visible, 1);
    assert_int_equal(at.visible, 1);
    r = apply1(f, cmd_delete("q", T0 + 4, g.handles[0])); /* the durable lease is whole */
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
}

static void test_apply_skips_a_message_an_earlier_entry_deleted(void **state)
{
    fixture_t *f = *state;
    queue_with(f, (const char *[]){"a", "b", NULL});
    got_t g = fixture_receive(f, "q", T0 + 1, 1, 0); /* a, due again at once */
    kyu_result_t res;
    kyu_command_t c = choose(f, T0 + 2, 1, hold_none, NULL, &res, true);
    assert_string_equal(body_of(&res, 0), "a");
    kyu_result_clear(&res);
    ok(apply1(f, cmd_delete("q", T0 + 3, g.handles[0])));
    kyu_result_t r = apply1(f, c);
    assert_int_equal(r.results[0], KYU_ERR_RECEIPT_STALE);
    kyu_result_clear(&r);
    kyu_queue_attrs_t at = fixture_attrs(f, "q", T0 + 4);
    assert_int_equal(at.visible + at.not_visible, 1); /* b alone: a was not brought back */
    g = fixture_receive(f, "q", T0 + 5, 10, 60);
    assert_string_equal(got_bodies(&g), "b");
    fixture_reopen(f); /* nor after a restart */
    g = fixture_receive(f, "q", T0 + 100000, 10, 60);
    assert_string_equal(got_bodies(&g), "b");
}

static void test_apply_skips_a_message_an_earlier_entry_purged(void **state)
{
    fixture_t *f = *state;
    queue_with(f, (const char *[]){"a", NULL});
    kyu_result_t res;
    kyu_command_t c = choose(f, T0 + 1, 1, hold_none, NULL, &res, true);
    kyu_result_clear(&res);
    kyu_command_t purge = cmd_create("q", -1);
    purge.type = KYU_CMD_PURGE_QUEUE;
    purge.now_ms = T0 + 2;
    ok(apply1(f, purge));
    kyu_result_t r = apply1(f, c);
    assert_int_equal(r.results[0], KYU_ERR_RECEIPT_STALE);
    kyu_result_clear(&r);
    kyu_queue_attrs_t at = fixture_attrs(f, "q", T0 + 3);
    assert_int_equal(at.visible + at.not_visible, 0);
}

/* A restart replays the early form from the log as it was applied: same leases. */
static void test_early_leases_survive_a_restart(void **state)
{
    fixture_t *f = *state;
    queue_with(f, (const char *[]){"a", "b", NULL});
    kyu_result_t res;
    kyu_command_t c = choose(f, T0 + 1, 1, hold_none, NULL, &res, true);
    kyu_result_clear(&res);
    ok(apply1(f, c));
    fixture_reopen(f);
    got_t g = fixture_receive(f, "q", T0 + 2, 10, 60);
    assert_string_equal(got_bodies(&g), "b");
}

static void test_no_early_answer_with_all_held_or_near_the_limit(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", 30)));
    ok(apply1(f, cmd_send("q", T0, "a")));
    kyu_result_t res;
    /* all held: nothing to answer early */
    kyu_command_t c = cmd_receive("q", T0 + 1, 1, 60);
    kyu_err_t err;
    uint64_t held[2] = {0, 0};
    assert_true(kyu_sm_receive_choose(f->sm, &c, kyu_sm_applied_term(f->sm), 0, hold_none, NULL,
                                      &res, &err));
    held[0] = c.chosen_seq[0];
    kyu_result_clear(&res);
    choose(f, T0 + 1, 1, hold_listed, held, &res, false);
    /* the in-flight limit near: the durable way */
    c = cmd_receive("q", T0 + 1, 1, 60);
    c.max_inflight = 1;
    assert_false(kyu_sm_receive_choose(f->sm, &c, kyu_sm_applied_term(f->sm), 1, hold_none, NULL,
                                       &res, &err));
}

static void test_the_early_form_decodes_strictly(void **state)
{
    (void)state;
    kyu_command_t c = cmd_receive("q", T0, 2, 60);
    c.early = true;
    c.n_chosen = 2;
    c.chosen_seq[0] = 7, c.chosen_gen[0] = 1;
    c.chosen_seq[1] = 9, c.chosen_gen[1] = 4;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kyu_command_encode(&c, &sb);
    kyu_command_t d;
    kyu_command_init(&d);
    size_t off = 0;
    kyu_err_t err;
    assert_int_equal(kyu_command_decode(sb.data, sb.size, &off, &d, &err), KYU_OK);
    assert_true(d.early);
    assert_int_equal(d.n_chosen, 2);
    assert_int_equal(d.chosen_seq[1], 9);
    assert_int_equal(d.chosen_gen[1], 4);
    msgpack_sbuffer_destroy(&sb);
    /* a generation 0 (never given by a receive) is a corrupt entry */
    c.chosen_gen[0] = 0;
    msgpack_sbuffer_init(&sb);
    kyu_command_encode(&c, &sb);
    off = 0;
    assert_int_not_equal(kyu_command_decode(sb.data, sb.size, &off, &d, &err), KYU_OK);
    msgpack_sbuffer_destroy(&sb);
}

/* The broker restarted in a new term (a lone voter elects itself in a higher one), as the
 * state machine sees it: entries applied from now on are of that term, the first one (the
 * leader serves only once it applied an entry of its term) a SET_HANDLE_KEY that changes
 * nothing. */
static void restart_in_term(fixture_t *f, uint64_t term)
{
    fixture_reopen(f);
    kyu_sm_set_entry_meta(f->sm, term, NULL, 0);
    with_key(f);
    assert_int_equal(kyu_sm_applied_term(f->sm), term);
}

/* The answer's handle of message i, copied; the command is dropped (its entry lost). */
static void lost_answer(kyu_result_t *res, size_t i, char handle[KYU_HANDLE_MAX + 1])
{
    memcpy(handle, res->msgs[i].handle, KYU_HANDLE_MAX + 1);
    kyu_result_clear(res);
}

static void expect_code(fixture_t *f, kyu_command_t c, kyu_code_t want)
{
    kyu_result_t r = apply1(f, c);
    assert_int_equal(r.code, KYU_OK);
    if (r.results[0] != want)
        fail_msg("expected %s, got %s", kyu_code_name(want), kyu_code_name(r.results[0]));
    kyu_result_clear(&r);
}

/* A lease answered early and lost with its broker (kill -9 before its entry committed) is
 * never applied. The message's next receive, after the restart, by another consumer, must
 * give a handle the lost one does not match: the lost handle's DELETE and CHANGE_VISIBILITY
 * are RECEIPT_STALE and change nothing; the new handle works (SQS: only the latest handle
 * acts). Both ways the next receive can go: early (a), and durable (b). */
static void test_a_lost_early_lease_handle_does_not_act_on_the_next_lease(void **state)
{
    fixture_t *f = *state;
    kyu_sm_set_entry_meta(f->sm, 1, NULL, 0);
    queue_with(f, (const char *[]){"a", "b", NULL});
    kyu_result_t res;
    char lost_a[KYU_HANDLE_MAX + 1], lost_b[KYU_HANDLE_MAX + 1];
    choose(f, T0 + 1, 2, hold_none, NULL, &res, true);
    assert_string_equal(body_of(&res, 0), "a");
    memcpy(lost_b, res.msgs[1].handle, sizeof lost_b);
    lost_answer(&res, 0, lost_a);
    restart_in_term(f, 2);
    /* a: received early again by the second consumer, its entry applied */
    kyu_command_t c = choose(f, T0 + 2, 1, hold_none, NULL, &res, true);
    assert_string_equal(body_of(&res, 0), "a");
    char new_a[KYU_HANDLE_MAX + 1];
    memcpy(new_a, res.msgs[0].handle, sizeof new_a);
    kyu_result_clear(&res);
    expect_code(f, c, KYU_OK);
    /* b: received the durable way */
    got_t g = fixture_receive(f, "q", T0 + 3, 1, 60);
    assert_string_equal(got_bodies(&g), "b");
    assert_string_not_equal(lost_a, new_a);
    assert_string_not_equal(lost_b, g.handles[0]);
    expect_code(f, cmd_change_visibility("q", T0 + 4, lost_a, 0), KYU_ERR_RECEIPT_STALE);
    expect_code(f, cmd_delete("q", T0 + 5, lost_a), KYU_ERR_RECEIPT_STALE);
    expect_code(f, cmd_delete("q", T0 + 5, lost_b), KYU_ERR_RECEIPT_STALE);
    kyu_queue_attrs_t at = fixture_attrs(f, "q", T0 + 6);
    assert_int_equal(at.not_visible, 2); /* both still held by the second consumer */
    assert_int_equal(at.visible, 0);
    expect_code(f, cmd_change_visibility("q", T0 + 7, new_a, 120), KYU_OK);
    expect_code(f, cmd_delete("q", T0 + 8, new_a), KYU_OK);
    expect_code(f, cmd_delete("q", T0 + 8, g.handles[0]), KYU_OK);
}

/* Leases lost in several terms in a row, and one lost after a lease of the same term was
 * applied: none of their handles matches a later lease. */
static void test_leases_lost_in_successive_terms_stay_stale(void **state)
{
    fixture_t *f = *state;
    kyu_sm_set_entry_meta(f->sm, 1, NULL, 0);
    queue_with(f, (const char *[]){"a", NULL});
    kyu_result_t res;
    char lost1[KYU_HANDLE_MAX + 1], lost2[KYU_HANDLE_MAX + 1], lost3[KYU_HANDLE_MAX + 1];
    choose(f, T0 + 1, 1, hold_none, NULL, &res, true);
    lost_answer(&res, 0, lost1);
    restart_in_term(f, 2);
    choose(f, T0 + 2, 1, hold_none, NULL, &res, true);
    lost_answer(&res, 0, lost2);
    restart_in_term(f, 3);
    /* applied in term 3 with a lease of 0 s, then received again and lost in term 3 */
    kyu_command_t c = cmd_receive("q", T0 + 3, 1, 0);
    kyu_err_t err;
    assert_true(kyu_sm_receive_choose(f->sm, &c, kyu_sm_applied_term(f->sm), 0, hold_none, NULL,
                                      &res, &err));
    char held3[KYU_HANDLE_MAX + 1];
    memcpy(held3, res.msgs[0].handle, sizeof held3);
    kyu_result_clear(&res);
    expect_code(f, c, KYU_OK);
    choose(f, T0 + 4, 1, hold_none, NULL, &res, true);
    lost_answer(&res, 0, lost3);
    restart_in_term(f, 4);
    got_t g = fixture_receive(f, "q", T0 + 5, 1, 60);
    assert_string_equal(got_bodies(&g), "a");
    const char *old[] = {lost1, lost2, held3, lost3};
    for (size_t i = 0; i < 4; i++) {
        expect_code(f, cmd_change_visibility("q", T0 + 6, old[i], 0), KYU_ERR_RECEIPT_STALE);
        expect_code(f, cmd_delete("q", T0 + 6, old[i]), KYU_ERR_RECEIPT_STALE);
    }
    expect_code(f, cmd_delete("q", T0 + 7, g.handles[0]), KYU_OK);
}

static uint32_t gen_of(const char *handle)
{
    uint64_t seq;
    uint32_t gen;
    assert_true(kyu_handle_parse(handle, &seq, &gen));
    return gen;
}

/* A lease's term is in its record: a restart within the term (a replica that reloads, or
 * replays the log) gives the next generation as a replica that did not restart does; the
 * next term's first one skips ahead past any lease lost in between. */
static void test_a_lease_keeps_its_term_across_a_restart(void **state)
{
    fixture_t *f = *state;
    kyu_sm_set_entry_meta(f->sm, 5, NULL, 0);
    queue_with(f, (const char *[]){"a", NULL});
    got_t g = fixture_receive(f, "q", T0 + 1, 1, 0);
    assert_int_equal(gen_of(g.handles[0]), 5); /* a first receive in term 5 */
    fixture_reopen(f);
    kyu_sm_set_entry_meta(f->sm, 5, NULL, 0);
    g = fixture_receive(f, "q", T0 + 2, 1, 0);
    assert_int_equal(gen_of(g.handles[0]), 6);
    restart_in_term(f, 7);
    g = fixture_receive(f, "q", T0 + 3, 1, 0);
    assert_int_equal(gen_of(g.handles[0]), 6 + 1 + 2);
}

/* A RECEIVE of "q" as binaries before the generation rule wrote it: items [] (durable), or
 * [0, false, chosen] with one lease (seq, gen) (early), applied as its own entry. */
static kyu_result_t apply_legacy_receive(fixture_t *f, uint64_t now, int64_t vt, uint64_t seq,
                                         uint32_t gen)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    pack_command_head(&pk, KYU_CMD_RECEIVE, now, "q", vt, 1);
    if (gen == 0) {
        msgpack_pack_array(&pk, 0);
    } else {
        uint8_t chosen[12];
        kyu_put_be64(chosen, seq);
        kyu_put_be32(chosen + 8, gen);
        msgpack_pack_array(&pk, 3);
        msgpack_pack_uint32(&pk, 0);
        msgpack_pack_false(&pk);
        msgpack_pack_bin(&pk, sizeof chosen);
        msgpack_pack_bin_body(&pk, chosen, sizeof chosen);
    }
    kyu_result_t r;
    size_t got = 0;
    kyu_err_t err;
    if (kyu_sm_apply(f->sm, ++f->index, b.data, b.size, &r, 1, &got, &err) != KYU_OK)
        fail_msg("apply failed: %s", err.msg);
    msgpack_sbuffer_destroy(&b);
    assert_int_equal(got, 1);
    return r;
}

/* Entries written before the rule replay as they were applied (the handles their binary
 * answered stay good): the generation after the last, whatever the term; the first receive
 * of the rule then skips past them by the term. */
static void test_entries_written_before_the_rule_give_the_next_generation(void **state)
{
    fixture_t *f = *state;
    kyu_sm_set_entry_meta(f->sm, 3, NULL, 0);
    queue_with(f, (const char *[]){"a", NULL});
    kyu_result_t r = apply_legacy_receive(f, T0 + 1, 0, 0, 0);
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_msgs, 1);
    uint64_t seq;
    uint32_t gen;
    assert_true(kyu_handle_parse(r.msgs[0].handle, &seq, &gen));
    assert_int_equal(gen, 1);
    kyu_result_clear(&r);
    r = apply_legacy_receive(f, T0 + 2, 0, seq, 2); /* an early one, as the old leader chose */
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
    got_t g = fixture_receive(f, "q", T0 + 3, 1, 60);
    assert_int_equal(gen_of(g.handles[0]), 2 + 1 + 3); /* its lease has no term: 0 */
}

/* RECEIVE items [limit, attempt, chosen or nil, rule] as kyu_command_decode sees them. */
static kyu_code_t decode_items(int rule, bool attempt, bool chosen, kyu_command_t *d)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    pack_command_head(&pk, KYU_CMD_RECEIVE, T0, "q", 60, 1);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint32(&pk, 5);
    if (attempt)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    if (chosen) {
        uint8_t c[12];
        kyu_put_be64(c, 7);
        kyu_put_be32(c + 8, 3);
        msgpack_pack_bin(&pk, sizeof c);
        msgpack_pack_bin_body(&pk, c, sizeof c);
    } else {
        msgpack_pack_nil(&pk);
    }
    msgpack_pack_int(&pk, rule);
    size_t off = 0;
    kyu_err_t err;
    kyu_code_t rc = kyu_command_decode(b.data, b.size, &off, d, &err);
    msgpack_sbuffer_destroy(&b);
    return rc;
}

/* The form with the generation rule: its fields, and nothing else (an attempt answered early,
 * a rule other than 1: malformed); every form before it decodes as gen_legacy. */
static void test_the_rule_form_decodes_strictly(void **state)
{
    (void)state;
    kyu_command_t d;
    assert_int_equal(decode_items(1, false, false, &d), KYU_OK);
    assert_false(d.gen_legacy || d.early || d.attempt);
    assert_int_equal(d.max_inflight, 5);
    assert_int_equal(decode_items(1, true, false, &d), KYU_OK);
    assert_true(d.attempt);
    assert_int_equal(decode_items(1, false, true, &d), KYU_OK);
    assert_true(d.early);
    assert_int_equal(d.chosen_gen[0], 3);
    assert_int_equal(decode_items(1, true, true, &d), KYU_ERR_MALFORMED);
    assert_int_equal(decode_items(2, false, false, &d), KYU_ERR_MALFORMED);
    assert_int_equal(decode_items(0, false, false, &d), KYU_ERR_MALFORMED);
    /* what this binary writes is the rule's form */
    kyu_command_t c = cmd_receive("q", T0, 2, 60);
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_command_encode(&c, &b);
    size_t off = 0;
    kyu_err_t err;
    assert_int_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    assert_false(d.gen_legacy);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_an_early_receive_records_exactly_the_leases_it_answered),
        T(test_the_choice_leaves_the_index_as_it_was),
        T(test_held_messages_are_not_chosen),
        T(test_no_fresh_message_is_chosen_past_one_a_delete_names),
        T(test_apply_skips_a_message_an_earlier_entry_leased),
        T(test_apply_skips_a_message_an_earlier_entry_deleted),
        T(test_apply_skips_a_message_an_earlier_entry_purged),
        T(test_early_leases_survive_a_restart),
        T(test_no_early_answer_with_all_held_or_near_the_limit),
        T(test_the_early_form_decodes_strictly),
        T(test_a_lost_early_lease_handle_does_not_act_on_the_next_lease),
        T(test_leases_lost_in_successive_terms_stay_stale),
        T(test_a_lease_keeps_its_term_across_a_restart),
        T(test_entries_written_before_the_rule_give_the_next_generation),
        T(test_the_rule_form_decodes_strictly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
