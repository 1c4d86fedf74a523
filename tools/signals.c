/* SIGTERM and SIGINT for the long-running commands (work, metrics): the
 * handler notes the signal and writes to a pipe that the command's loop
 * polls, so nothing but a write happens in signal context. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static int signal_pipe[2] = {-1, -1};
static volatile sig_atomic_t signal_seen;

static void on_signal(int sig)
{
	int saved = errno;
	signal_seen = sig;
	char c = 1;
	if (write(signal_pipe[1], &c, 1) < 0) {
		/* Full: a wake-up is pending already. */
	}
	errno = saved;
}

int cli_signals_install(int *fd)
{
	if (signal_pipe[0] < 0 && pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK))
		return cli_error(CLI_FAILED, "cannot make a pipe: %s",
				 strerror(errno));
	signal_seen = 0;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	*fd = signal_pipe[0];
	return 0;
}

int cli_signal_seen(void)
{
	char buf[16];
	while (read(signal_pipe[0], buf, sizeof buf) > 0)
		;
	return signal_seen;
}

void cli_signals_restore(void)
{
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
}
