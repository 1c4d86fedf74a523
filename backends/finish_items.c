/* Checking and quoting a finish call's items, alike in both SQL stores. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>

#include "finish_items.h"

int bus__finish_item_check(const bus_store_env *env, const char *store,
			   const bus_store_finish *it, size_t i)
{
	if (it->node == NULL)
		return env->error(BUS_EINVAL,
				  "%s: finish: item %zu has no node", store, i);
	switch (it->state) {
	case BUS_JOB_COMPLETED:
	case BUS_JOB_RETRYABLE:
	case BUS_JOB_DISCARDED:
	case BUS_JOB_CANCELLED:
	case BUS_JOB_SCHEDULED:
	case BUS_JOB_AVAILABLE: break;
	default:
		return env->error(BUS_EINVAL,
				  "%s: finish: item %zu (job %lld): state %d "
				  "is not an outcome",
				  store, i, (long long)it->id, (int)it->state);
	}
	if (it->only_if_expired < 0 ||
	    it->only_if_expired > BUS_FINISH_IF_EXPIRED_UNSTARTED)
		return env->error(BUS_EINVAL,
				  "%s: finish: item %zu (job %lld): "
				  "only_if_expired %d is unknown",
				  store, i, (long long)it->id,
				  it->only_if_expired);
	/* Far past BUS_DELAY_MAX_S, and still exact in every store's time
	 * arithmetic. */
	if (it->delay_us > INT64_C(1) << 58)
		return env->error(BUS_EINVAL,
				  "%s: finish: item %zu (job %lld): the delay "
				  "is out of range",
				  store, i, (long long)it->id);
	return 0;
}

void bus__finish_errors_free(char **errors, size_t n)
{
	for (size_t i = 0; errors != NULL && i < n; i++)
		cJSON_free(errors[i]);
	free(errors);
}

int bus__finish_errors_quote(const bus_store_finish *items, size_t n,
			     char ***out)
{
	*out = NULL;
	char **e = NULL;
	for (size_t i = 0; i < n; i++) {
		if (items[i].error == NULL)
			continue;
		if (e == NULL && (e = calloc(n, sizeof *e)) == NULL)
			return BUS_ENOMEM;
		cJSON *str = cJSON_CreateString(items[i].error);
		e[i] = str ? cJSON_PrintUnformatted(str) : NULL;
		cJSON_Delete(str);
		if (e[i] == NULL) {
			bus__finish_errors_free(e, n);
			return BUS_ENOMEM;
		}
	}
	*out = e;
	return 0;
}
