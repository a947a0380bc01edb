/* qemu-test-agent: runs commands and copies files for the host over a
 * virtio-serial port (the data channel of qemu_test's Shell).
 *
 * Build (cargo xtask guests does it, and checks the committed binaries):
 *   gcc -static -Os -s -Wl,--build-id=none ... -o agent-x86_64 agent.c
 *   aarch64-linux-gnu-gcc (the same flags) -o agent-aarch64 agent.c
 *
 * Usage: qemu-test-agent [PORT-NAME]   (default org.qemu-test.data)
 *
 * Finds the port /dev/vportNpM whose /sys/class/virtio-ports/vportNpM/name
 * is PORT-NAME (waiting for it: quickly at boot, then once a second, so a
 * guest without the port costs nothing), waits until the host side is
 * connected, says HELLO and serves the host until it goes away; then it
 * waits for the next host. It never exits on its own (init respawns it if
 * it is killed).
 *
 * Frames, both directions, integers little-endian:
 *   u8 'q', u8 't', u8 type, u8 flags (0), u32 id, u32 len, len bytes
 * A reply carries the id of its request. The host sends at most one
 * request that starts a job (RUN, GET, PUT) at a time; PING and KILL are
 * served whatever runs.
 *
 * host -> guest
 *   PING  any bytes             -> PONG: the same bytes, then u32 version,
 *                                  u32 largest payload the agent takes,
 *                                  u32 id of the request still running
 *                                  (0: none)
 *   RUN   command (no NUL)      -> OUT/ERR chunks as the command writes its
 *                                  stdout/stderr, then EXIT (u32 wait status).
 *                                  /bin/sh -c COMMAND in its own session and
 *                                  process group, stdin /dev/null, cwd $HOME.
 *   GET   path (no NUL)         -> DATA chunks, then END
 *   PUT   u32 flags (0), path   -> the file is created or truncated (mode
 *                                  0666 less the umask); then
 *   DATA  bytes (id of the PUT)    written to it, in order;
 *   END   (id of the PUT)       -> END: the file is closed.
 *                                  If opening or writing fails, END comes at
 *                                  once and the PUT is over: later DATA and
 *                                  END frames with its id are ignored.
 *   KILL  u32 signal            -> the running command's process group gets
 *                                  the signal (EXIT follows when it exits);
 *                                  a GET or PUT stops with END (ECANCELED).
 * guest -> host
 *   HELLO u32 version, u32 pid, u32 largest payload (id 0; whenever a host
 *         connects)
 *   PONG, OUT, ERR, EXIT, DATA as above
 *   END   u32 errno (0: done), u64 bytes read or written
 *   ERROR text: the request was refused ("busy", "bad request: ...")
 *
 * Robustness: a frame whose header is not valid (magic, flags, a known
 * type, len <= the largest payload) is skipped a byte at a time until a
 * valid header starts (resync); the host's own resync is a PING with a
 * random nonce. When the host side closes (read() returns 0) the job is
 * stopped (SIGKILL to a command's process group), half-read requests are
 * dropped, and the agent waits for the next host.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
	T_HELLO = 1, T_PING, T_PONG, T_RUN, T_OUT, T_ERR, T_EXIT,
	T_PUT, T_GET, T_DATA, T_END, T_KILL, T_ERROR,
	T_LAST = T_ERROR,
};
#define VERSION 1
#define HDR 12
#define MAX_PAYLOAD (1u << 20) /* the largest request payload */
#define CHUNK (256u << 10)     /* the largest OUT/ERR/DATA payload sent */
#define MAX_PATH 4096

extern char **environ;

static int port = -1;
static int host_gone; /* a write found the host side closed */
static const char *portname = "org.qemu-test.data";
static int devnull = -1;

static void msleep(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, 0);
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}

static uint32_t get32(const unsigned char *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- writing frames */

/* Writes all of buf to the port (waiting while it is full); -1 when the
 * host side is closed (and host_gone is set). */
static int write_all(const void *buf, size_t n)
{
	const char *p = buf;
	while (n && !host_gone) {
		ssize_t w = write(port, p, n);
		if (w > 0) {
			p += w;
			n -= w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pf = {port, POLLOUT, 0};
			if (poll(&pf, 1, -1) > 0 && (pf.revents & (POLLHUP | POLLERR)) && !(pf.revents & POLLOUT))
				host_gone = 1;
			continue;
		}
		host_gone = 1;
	}
	return host_gone ? -1 : 0;
}

static unsigned char out[HDR + CHUNK];

/* Sends a frame whose payload is a then b; small frames in one write, so
 * they travel in one virtio buffer. */
static int send_frame(int type, uint32_t id, const void *a, size_t alen, const void *b, size_t blen)
{
	unsigned char h[HDR] = {'q', 't', (unsigned char)type, 0};
	put32(h + 4, id);
	put32(h + 8, alen + blen);
	if (HDR + alen + blen <= sizeof out) {
		memcpy(out, h, HDR);
		if (alen)
			memmove(out + HDR, a, alen);
		if (blen)
			memmove(out + HDR + alen, b, blen);
		return write_all(out, HDR + alen + blen);
	}
	if (write_all(h, HDR) || (alen && write_all(a, alen)) || (blen && write_all(b, blen)))
		return -1;
	return 0;
}

static void send_error(uint32_t id, const char *msg)
{
	send_frame(T_ERROR, id, msg, strlen(msg), 0, 0);
}

static void send_end(uint32_t id, uint32_t err, uint64_t bytes)
{
	unsigned char b[12];
	put32(b, err);
	put32(b + 4, (uint32_t)bytes);
	put32(b + 8, (uint32_t)(bytes >> 32));
	send_frame(T_END, id, b, sizeof b, 0, 0);
}

static void hello(void)
{
	unsigned char b[12];
	put32(b, VERSION);
	put32(b + 4, getpid());
	put32(b + 8, MAX_PAYLOAD);
	send_frame(T_HELLO, 0, b, sizeof b, 0, 0);
}

/* ---- finding and opening the port */

/* dst = "/sys/class/virtio-ports/" or "/dev/", then name, then suffix */
static void join(char *dst, size_t cap, const char *a, const char *b, const char *c)
{
	size_t n = 0;
	const char *parts[3] = {a, b, c};
	for (int i = 0; i < 3; i++)
		for (const char *q = parts[i]; *q && n + 1 < cap; q++)
			dst[n++] = *q;
	dst[n] = 0;
}

static int find_port(char *dev, size_t devlen)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	struct dirent *e;
	int found = 0;
	if (!d)
		return 0;
	while (!found && (e = readdir(d))) {
		char path[300], name[128];
		ssize_t n;
		int fd;
		if (e->d_name[0] == '.')
			continue;
		join(path, sizeof path, "/sys/class/virtio-ports/", e->d_name, "/name");
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, name, sizeof name - 1);
		close(fd);
		if (n <= 0)
			continue;
		while (n && (name[n - 1] == '\n' || name[n - 1] == 0))
			n--;
		name[n] = 0;
		if (!strcmp(name, portname)) {
			join(dev, devlen, "/dev/", e->d_name, "");
			found = 1;
		}
	}
	closedir(d);
	return found;
}

/* Waits for the port to appear and opens it. */
static void open_port(void)
{
	char dev[300];
	int tries = 0;
	for (;;) {
		if (find_port(dev, sizeof dev)) {
			port = open(dev, O_RDWR | O_CLOEXEC | O_NONBLOCK);
			if (port >= 0)
				return;
		}
		/* quickly at boot (the port appears shortly after the module
		 * loads), then slowly: a guest without the port costs nothing */
		msleep(tries++ < 200 ? 10 : 1000);
	}
}

/* Waits until the host side is connected (the port stops polling HUP). */
static void wait_host(void)
{
	for (;;) {
		struct pollfd pf = {port, POLLIN, 0};
		if (poll(&pf, 1, 0) >= 0 && !(pf.revents & POLLHUP))
			break;
		msleep(20);
	}
	host_gone = 0;
}

/* ---- the job: one command, GET or PUT at a time */

enum { J_NONE, J_RUN, J_GET, J_PUT };
static int job;
static uint32_t job_id;
static uint64_t job_bytes;

static pid_t child = -1;
static int child_pidfd = -1, out_fd = -1, err_fd = -1;
static int file_fd = -1; /* GET's source, PUT's target */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* The child, between vfork and exec: only system calls. */
static void exec_child(const char *cmd, int o, int e, const char *home)
{
	static const char msg[] = "qemu-test-agent: cannot run /bin/sh\n";
	struct sigaction dfl;
	sigset_t none;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	setsid();
	/* ignored signals stay ignored across exec: give the command defaults */
	sigaction(SIGPIPE, &dfl, 0);
	sigaction(SIGCHLD, &dfl, 0);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, 0);
	if (dup2(devnull, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
		_exit(127);
	if (chdir(home) && chdir("/"))
		_exit(127);
	char *argv[] = {"sh", "-c", (char *)cmd, 0};
	execve("/bin/sh", argv, environ);
	if (write(2, msg, sizeof msg - 1) < 0)
		_exit(127);
	_exit(127);
}

static void start_command(uint32_t id, const char *cmd)
{
	int o[2], e[2];
	const char *home = getenv("HOME");
	if (pipe2(o, O_CLOEXEC)) {
		send_error(id, "cannot make a pipe");
		return;
	}
	if (pipe2(e, O_CLOEXEC)) {
		close(o[0]);
		close(o[1]);
		send_error(id, "cannot make a pipe");
		return;
	}
	/* room for a burst of output while the port is busy */
	fcntl(o[0], F_SETPIPE_SZ, 1 << 20);
	fcntl(e[0], F_SETPIPE_SZ, 256 << 10);
	/* vfork: no page-table copy (a millisecond under TCG); the child only
	 * makes system calls until exec */
	pid_t pid = vfork();
	if (pid == 0)
		exec_child(cmd, o[1], e[1], home ? home : "/");
	close(o[1]);
	close(e[1]);
	if (pid < 0) {
		close(o[0]);
		close(e[0]);
		send_error(id, "cannot fork");
		return;
	}
	job = J_RUN;
	job_id = id;
	child = pid;
	out_fd = o[0];
	err_fd = e[0];
	fcntl(out_fd, F_SETFL, O_NONBLOCK);
	fcntl(err_fd, F_SETFL, O_NONBLOCK);
	child_pidfd = syscall(SYS_pidfd_open, pid, 0);
}

static unsigned char chunk[CHUNK];

/* Forwards at most max bytes the pipe has now; on EOF or an error closes
 * it. Returns the bytes forwarded. */
static size_t forward(int *fd, int type, size_t max)
{
	if (max > CHUNK)
		max = CHUNK;
	ssize_t n = read(*fd, chunk, max);
	if (n > 0) {
		send_frame(type, job_id, chunk, n, 0, 0);
		return n;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	close_fd(fd);
	return 0;
}

/* The pipe is readable: forwards what it holds. A command's output often
 * comes in small writes, each of which would wake the agent and cost a
 * frame (and the virtqueue a notification, dear under TCG): with little
 * in the pipe, wait a moment (at most BATCH_WAIT_MS, less if the command
 * exits) for more, so that a stream of small writes goes out in big
 * frames. */
#define BATCH (64u << 10)
#define BATCH_WAIT_MS 1
static void forward_batched(int *fd, int type)
{
	int avail = 0;
	if (ioctl(*fd, FIONREAD, &avail) == 0 && avail > 0 && (unsigned)avail < BATCH &&
	    child_pidfd >= 0) {
		struct pollfd pf = {child_pidfd, POLLIN, 0};
		poll(&pf, 1, BATCH_WAIT_MS);
	}
	forward(fd, type, CHUNK);
}

/* Forwards what the pipe holds now (not what a background process that
 * kept it open writes later). */
static void drain_pipe(int *fd, int type)
{
	int avail = 0;
	if (*fd < 0 || ioctl(*fd, FIONREAD, &avail) < 0)
		return;
	while (avail > 0 && *fd >= 0 && !host_gone) {
		size_t n = forward(fd, type, avail);
		if (!n)
			break;
		avail -= n;
	}
}

static void end_command(int status)
{
	drain_pipe(&out_fd, T_OUT);
	drain_pipe(&err_fd, T_ERR);
	close_fd(&out_fd);
	close_fd(&err_fd);
	close_fd(&child_pidfd);
	child = -1;
	job = J_NONE;
	unsigned char b[4];
	put32(b, status);
	send_frame(T_EXIT, job_id, b, 4, 0, 0);
}

/* Whether the command has exited; ends it if so. */
static void reap_command(void)
{
	int status;
	pid_t r = waitpid(child, &status, WNOHANG);
	if (r == child)
		end_command(status);
}

static void end_file_job(uint32_t err)
{
	close_fd(&file_fd);
	job = J_NONE;
	send_end(job_id, err, job_bytes);
}

static void start_get(uint32_t id, const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	job_id = id;
	job_bytes = 0;
	if (fd < 0) {
		send_end(id, errno, 0);
		return;
	}
	job = J_GET;
	file_fd = fd;
}

/* The GET's file is readable: send a chunk, or END at its end. */
static void step_get(void)
{
	ssize_t n = read(file_fd, chunk, CHUNK);
	if (n > 0) {
		job_bytes += n;
		send_frame(T_DATA, job_id, chunk, n, 0, 0);
	} else if (n == 0) {
		end_file_job(0);
	} else if (errno != EAGAIN && errno != EINTR) {
		end_file_job(errno);
	}
}

static void start_put(uint32_t id, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_CLOEXEC, 0666);
	job_id = id;
	job_bytes = 0;
	if (fd < 0) {
		send_end(id, errno, 0);
		return;
	}
	/* blocking writes from here on (O_NONBLOCK only kept open() of a
	 * FIFO without a reader from hanging) */
	fcntl(fd, F_SETFL, 0);
	job = J_PUT;
	file_fd = fd;
}

static void put_data(const unsigned char *p, uint32_t len)
{
	while (len) {
		ssize_t w = write(file_fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			end_file_job(w < 0 ? errno : EIO);
			return;
		}
		p += w;
		len -= w;
		job_bytes += w;
	}
}

static void put_end(void)
{
	int fd = file_fd;
	file_fd = -1;
	job = J_NONE;
	send_end(job_id, close(fd) ? errno : 0, job_bytes);
}

static void kill_job(int sig)
{
	if (job == J_RUN && child > 0)
		kill(-child, sig);
	else if (job == J_GET || job == J_PUT)
		end_file_job(ECANCELED);
}

/* Stops whatever runs, without telling the host (it is gone). */
static void reset_job(void)
{
	if (job == J_RUN && child > 0) {
		int status;
		kill(-child, SIGKILL);
		waitpid(child, &status, 0);
		close_fd(&out_fd);
		close_fd(&err_fd);
		close_fd(&child_pidfd);
		child = -1;
	}
	close_fd(&file_fd);
	job = J_NONE;
}

/* ---- requests */

/* A payload that must be a non-empty C string without NUL of at most max
 * bytes; NUL-terminates it in place (the buffer has room). */
static const char *text(unsigned char *p, uint32_t len, uint32_t max)
{
	if (!len || len > max || memchr(p, 0, len))
		return 0;
	p[len] = 0;
	return (const char *)p;
}

static int busy(uint32_t id)
{
	if (job == J_NONE)
		return 0;
	send_error(id, "busy: another request is still running");
	return 1;
}

static void handle(int type, uint32_t id, unsigned char *p, uint32_t len)
{
	const char *s;
	unsigned char info[12];
	switch (type) {
	case T_PING:
		put32(info, VERSION);
		put32(info + 4, MAX_PAYLOAD);
		put32(info + 8, job == J_NONE ? 0 : job_id);
		send_frame(T_PONG, id, p, len, info, sizeof info);
		break;
	case T_KILL:
		if (len == 4 && id == job_id)
			kill_job((int)get32(p));
		break;
	case T_RUN:
		if (busy(id))
			break;
		if (!(s = text(p, len, MAX_PAYLOAD)))
			send_error(id, "bad request: RUN needs a command without NUL bytes");
		else
			start_command(id, s);
		break;
	case T_GET:
		if (busy(id))
			break;
		if (!(s = text(p, len, MAX_PATH)))
			send_error(id, "bad request: GET needs a path without NUL bytes");
		else
			start_get(id, s);
		break;
	case T_PUT:
		if (busy(id))
			break;
		if (len < 4 || get32(p) != 0 || !(s = text(p + 4, len - 4, MAX_PATH)))
			send_error(id, "bad request: PUT needs flags 0 and a path without NUL bytes");
		else
			start_put(id, s);
		break;
	case T_DATA:
		if (job == J_PUT && id == job_id)
			put_data(p, len);
		break;
	case T_END:
		if (job == J_PUT && id == job_id)
			put_end();
		break;
	default:
		send_error(id, "bad request: not a request type");
	}
}

/* What came from the host and is not handled yet; room for one more NUL. */
static unsigned char inbuf[2 * (HDR + MAX_PAYLOAD) + 1];
static size_t inlen;

static int valid_header(const unsigned char *h)
{
	return h[0] == 'q' && h[1] == 't' && h[2] >= T_HELLO && h[2] <= T_LAST && h[3] == 0 &&
	       get32(h + 8) <= MAX_PAYLOAD;
}

/* Handles the whole frames at the start of inbuf. */
static void parse(void)
{
	size_t off = 0;
	while (inlen - off >= HDR && !host_gone) {
		unsigned char *h = inbuf + off;
		if (!valid_header(h)) {
			off++; /* not a frame start: resync */
			continue;
		}
		uint32_t len = get32(h + 8);
		if (inlen - off < HDR + len)
			break;
		unsigned char saved = h[HDR + len];
		handle(h[2], get32(h + 4), h + HDR, len);
		h[HDR + len] = saved; /* text() may have put a NUL there */
		off += HDR + len;
	}
	/* a partial magic at the end waits for more bytes; anything else
	 * that cannot start a frame goes */
	memmove(inbuf, inbuf + off, inlen - off);
	inlen -= off;
}

/* Reads what the port has: 1 if something came, 0 if nothing, -1 when the
 * host side is closed (end of file). */
static int read_port(void)
{
	int got = 0;
	for (;;) {
		if (inlen == sizeof inbuf - 1)
			return 1; /* full: parse() makes room */
		ssize_t n = read(port, inbuf + inlen, sizeof inbuf - 1 - inlen);
		if (n > 0) {
			/* a read returns one virtio buffer (4 KiB at most): take
			 * all there is, so data is handled in big pieces */
			inlen += n;
			got = 1;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return got;
		return got ? 1 : -1;
	}
}

static void serve(void)
{
	for (;;) {
		struct pollfd pf[4] = {{port, POLLIN, 0}, {-1, 0, 0}, {-1, 0, 0}, {-1, 0, 0}};
		int timeout = -1;
		if (job == J_RUN) {
			pf[1] = (struct pollfd){out_fd, POLLIN, 0};
			pf[2] = (struct pollfd){err_fd, POLLIN, 0};
			pf[3] = (struct pollfd){child_pidfd, POLLIN, 0};
			if (child_pidfd < 0)
				timeout = 10; /* no pidfd (kernel < 5.3): look now and then */
		} else if (job == J_GET) {
			pf[1] = (struct pollfd){file_fd, POLLIN, 0};
		}
		if (poll(pf, 4, timeout) < 0 && errno != EINTR)
			msleep(10);
		if (job == J_RUN) {
			if (pf[1].revents)
				forward_batched(&out_fd, T_OUT);
			if (pf[2].revents)
				forward_batched(&err_fd, T_ERR);
			if (pf[3].revents || child_pidfd < 0)
				reap_command();
		} else if (job == J_GET && pf[1].revents) {
			step_get();
		}
		if (pf[0].revents && !host_gone) {
			int r = read_port();
			/* with the host side closed the port polls HUP, and read()
			 * returns 0 once what came before is read */
			if (r < 0 || (r == 0 && (pf[0].revents & (POLLHUP | POLLERR))))
				host_gone = 1;
			else
				parse();
		}
		if (host_gone)
			return;
	}
}

int main(int argc, char **argv)
{
	struct sigaction ign;
	if (argc > 1)
		portname = argv[1];
	memset(&ign, 0, sizeof ign);
	ign.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &ign, 0);
	/* the environment of the console's login shell (/etc/profile) */
	setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
	setenv("HOME", "/root", 1);
	setenv("TERM", "vt100", 1);
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	open_port();
	for (;;) {
		wait_host();
		hello();
		serve();
		/* the host went away: the next one starts afresh */
		reset_job();
		inlen = 0;
	}
}
