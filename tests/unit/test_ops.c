/* The table of operations (broker/ops.c): every row is reachable by its codes and takes
 * exactly one way through the broker. */
#include "fixture.h"
#include "ops.h"

static void test_every_wire_op_has_a_row_and_every_row_its_wire_part(void **state)
{
    (void)state;
    for (unsigned op = 0; op < KYU_OPS_MAX_; op++) {
        const kyu_op_info_t *info = kyu_op_info(op);
        const kyu_op_row_t *row = kyu_ops_row(op);
        if (op < KYU_OP_INTERNAL_) {
            assert_true((info == NULL) == (row == NULL));
        } else {
            assert_null(info); /* internal ops never come from the wire */
        }
        if (row)
            assert_int_equal(row->op, op);
        if (info && row)
            assert_string_equal(info->name, row->name);
    }
}

static void test_every_command_row_is_found_by_its_type(void **state)
{
    (void)state;
    size_t commands = 0;
    for (unsigned op = 0; op < KYU_OPS_MAX_; op++) {
        const kyu_op_row_t *row = kyu_ops_row(op);
        if (!row || !row->cmd)
            continue;
        commands++;
        assert_ptr_equal(kyu_ops_command(row->cmd), row);
    }
    size_t types = 0;
    for (uint64_t t = 0; t < 256; t++)
        types += kyu_ops_command(t) != NULL;
    assert_int_equal(types, commands);
    assert_null(kyu_ops_command(0));
    assert_null(kyu_ops_command(UINT64_MAX));
}

static void test_every_row_takes_exactly_one_way(void **state)
{
    (void)state;
    for (unsigned op = 0; op < KYU_OPS_MAX_; op++) {
        const kyu_op_row_t *row = kyu_ops_row(op);
        if (!row)
            continue;
        int ways =
            (row->answer != NULL) + (row->start != NULL) + (row->session != NULL) + (row->cmd != 0);
        assert_int_equal(ways, 1);
        assert_true((row->cmd != 0) == (row->apply != NULL));
        /* A row takes a request key exactly when the wire lets a client send one. */
        const kyu_op_info_t *info = kyu_op_info(op);
        if (info)
            assert_true(((info->allowed & KYU_F_RQ) != 0) == (row->replay != NULL));
        assert_true((row->replay != NULL) == (row->dedup != 0));
        if (info && (info->flags & KYU_OPF_WRITE))
            assert_int_not_equal(row->cmd, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_wire_op_has_a_row_and_every_row_its_wire_part),
        cmocka_unit_test(test_every_command_row_is_found_by_its_type),
        cmocka_unit_test(test_every_row_takes_exactly_one_way),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
