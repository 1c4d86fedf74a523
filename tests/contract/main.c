/*
 * The contract suite's runner. The store under test is $BUS_CONTRACT_URL
 * ("memory:" when unset):
 *
 *   BUS_CONTRACT_URL=postgres://user:pw@host/db contract/check_contract
 *
 * Each test runs in a child process (Check's CK_FORK, unless $CK_FORK=no),
 * so one that crashes or hangs fails alone. The exit status is non-zero
 * when any test failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"

/* Prints which store is under test by its scheme only: the rest of a URL
 * may hold a password. */
static void print_store(const char *url)
{
	const char *colon = strchr(url, ':');
	int len = colon ? (int)(colon - url) : (int)strlen(url);
	printf("contract suite: store '%.*s'\n", len, url);
	fflush(stdout);
}

int main(void)
{
	print_store(contract_url());
	Suite *s = suite_create("contract");
	suite_add_tcase(s, contract_claim());
	suite_add_tcase(s, contract_schedule());
	suite_add_tcase(s, contract_retry());
	suite_add_tcase(s, contract_snooze_cancel());
	suite_add_tcase(s, contract_pause());
	suite_add_tcase(s, contract_unique());
	suite_add_tcase(s, contract_unique_states());
	suite_add_tcase(s, contract_replace());
	suite_add_tcase(s, contract_rescue());
	suite_add_tcase(s, contract_rescue_poison());
	suite_add_tcase(s, contract_shutdown());
	suite_add_tcase(s, contract_isolation());
	suite_add_tcase(s, contract_children());
	suite_add_tcase(s, contract_fanout());
	suite_add_tcase(s, contract_admin());
	suite_add_tcase(s, contract_prune());
	suite_add_tcase(s, contract_validation());
	suite_add_tcase(s, contract_defaults());
	suite_add_tcase(s, contract_defects());

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
