/* An insert batch read back after a lost connection (see landed.h). */
#include <stdlib.h>

#include "landed.h"

int bus__landed_apply(const bus_store_new_job *jobs, size_t n,
		      const int64_t *found, size_t n_found,
		      bus_enqueue_result *results, bus_landed_rerun_fn rerun,
		      void *ctx, size_t *missing)
{
	size_t n_again = n > n_found ? n - n_found : 0, k = 0;
	bus_store_new_job *again = NULL;
	bus_enqueue_result *again_res = NULL;
	int *seqs = NULL;
	int rc = 0;
	if (n_again > 0) {
		again = calloc(n_again, sizeof *again);
		again_res = calloc(n_again, sizeof *again_res);
		seqs = calloc(n_again, sizeof *seqs);
		if (again == NULL || again_res == NULL || seqs == NULL)
			rc = BUS_ENOMEM;
	}
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (found[i] != 0) {
			results[i].id = found[i];
			results[i].status = BUS_INSERTED;
		} else if (jobs[i].unique_key == NULL || k == n_again) {
			*missing = i;
			rc = BUS_ESTATE;
		} else {
			again[k] = jobs[i];
			seqs[k++] = (int)i;
		}
	}
	if (rc == 0 && k > 0)
		rc = rerun(ctx, again, k, seqs, again_res);
	for (size_t j = 0; rc == 0 && j < k; j++)
		results[seqs[j]] = again_res[j];
	free(again);
	free(again_res);
	free(seqs);
	return rc;
}
