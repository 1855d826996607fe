// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * vsock-traffic: known AF_VSOCK traffic on CID 1 (vsock_loopback) for capture tests,
 * logging each step so the test can predict every packet; `bulk` mode measures throughput.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define CID_LOCAL 1
#define SMALL_BUF 32768u

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "vsock-traffic: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, ": %s\n", strerror(errno));
	va_end(ap);
	exit(1);
}

/* Payload bytes are a function of a tag and offset so the test can recompute them. */
static void fill(unsigned char *p, size_t n, unsigned tag)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)((tag * 31u + i) % 251u);
}

static int vsock_socket(int type, unsigned port)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				 .svm_port = port };
	int fd = socket(AF_VSOCK, type, 0);

	if (fd < 0)
		die("socket(AF_VSOCK, %d)", type);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind port %u", port);
	return fd;
}

static void set_buf(int fd, unsigned long long size)
{
	if (setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &size, sizeof(size)) < 0)
		die("SO_VM_SOCKETS_BUFFER_SIZE %llu", size);
}

static unsigned long long get_buf(int fd)
{
	unsigned long long size = 0;
	socklen_t len = sizeof(size);

	if (getsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &size, &len) < 0)
		die("getsockopt SO_VM_SOCKETS_BUFFER_SIZE");
	return size;
}

static int do_connect(int fd, unsigned port)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = CID_LOCAL,
				 .svm_port = port };

	return connect(fd, (struct sockaddr *)&a, sizeof(a));
}

/* A connected pair: client bound to cport, server's listener on sport. */
static void open_pair(const char *name, int type, unsigned cport, unsigned sport,
		      unsigned sbuf, int *c, int *s)
{
	int l = vsock_socket(type, sport);

	if (sbuf)
		set_buf(l, sbuf);
	if (listen(l, 1) < 0)
		die("listen %u", sport);
	*c = vsock_socket(type, cport);
	if (do_connect(*c, sport) < 0)
		die("connect to port %u", sport);
	*s = accept(l, NULL, NULL);
	if (*s < 0)
		die("accept on %u", sport);
	close(l);
	printf("conn %s type=%s cport=%u sport=%u cbuf=%llu sbuf=%llu\n", name,
	       type == SOCK_STREAM ? "stream" : "seqpacket", cport, sport,
	       get_buf(*c), get_buf(*s));
}

static size_t xsend(int fd, const char *conn, const char *from, unsigned tag, size_t len,
		    int flags)
{
	unsigned char *p = malloc(len);
	ssize_t n;

	if (!p)
		die("malloc %zu", len);
	fill(p, len, tag);
	n = send(fd, p, len, flags);
	if (n < 0)
		die("send %zu bytes on %s", len, conn);
	printf("send %s from=%s tag=%u len=%zd eor=%d\n", conn, from, tag, n,
	       (flags & MSG_EOR) ? 1 : 0);
	free(p);
	return (size_t)n;
}

/* Reads exactly len bytes (one recv per call logged: each may send a credit update). */
static void xrecv(int fd, const char *conn, const char *by, size_t len)
{
	unsigned char *p = malloc(len ? len : 1);
	size_t got = 0;

	if (!p)
		die("malloc %zu", len);
	while (got < len) {
		ssize_t n = recv(fd, p + got, len - got, 0);

		if (n <= 0)
			die("recv on %s got %zd of %zu", conn, n, len);
		got += (size_t)n;
		printf("recv %s by=%s len=%zd\n", conn, by, n);
	}
	free(p);
}

static void expect_eof(int fd, const char *conn, const char *by)
{
	char b;
	ssize_t n = recv(fd, &b, 1, 0);

	if (n != 0)
		die("expected end of stream on %s (by %s), got %zd", conn, by, n);
	printf("eof %s by=%s\n", conn, by);
}

static void stream_scenario(void)
{
	int c, s;
	size_t n;

	open_pair("s1", SOCK_STREAM, 6000, 5000, SMALL_BUF, &c, &s);
	xsend(c, "s1", "client", 1, 26, 0);
	xrecv(s, "s1", "server", 26);
	xsend(s, "s1", "server", 2, 25, 0);
	xrecv(c, "s1", "client", 25);
	/* More than the server's window: the first send stops when credit runs out. */
	n = xsend(c, "s1", "client", 3, 40000, MSG_DONTWAIT);
	xrecv(s, "s1", "server", n);
	xsend(c, "s1", "client", 4, 40000 - n, 0);
	xrecv(s, "s1", "server", 40000 - n);
	if (shutdown(c, SHUT_WR) < 0)
		die("shutdown(SHUT_WR) on s1");
	printf("shutdown s1 by=client how=wr\n");
	expect_eof(s, "s1", "server");
	close(s);
	printf("close s1 by=server\n");
	expect_eof(c, "s1", "client");
	close(c);
	printf("close s1 by=client\n");
}

static void seqpacket_scenario(void)
{
	int c, s;
	unsigned char *p = malloc(70000);
	ssize_t n;

	if (!p)
		die("malloc");
	open_pair("q1", SOCK_SEQPACKET, 6001, 5001, 0, &c, &s);
	/* Lockstep: each recv drains the queue, so each sends one credit update. */
	for (int i = 0; i < 2; i++) {
		xsend(c, "q1", "client", 5 + i, i ? 70000 : 100, i ? MSG_EOR : 0);
		n = recv(s, p, 70000, 0);
		if (n <= 0)
			die("seqpacket recv %d on q1", i);
		printf("recv q1 by=server len=%zd\n", n);
	}
	xsend(s, "q1", "server", 7, 10, 0);
	n = recv(c, p, 70000, 0);
	if (n != 10)
		die("seqpacket reply on q1: %zd", n);
	printf("recv q1 by=client len=%zd\n", n);
	close(c);
	printf("close q1 by=client\n");
	expect_eof(s, "q1", "server");
	close(s);
	printf("close q1 by=server\n");
	free(p);
}

static void refused(const char *name, int type, unsigned cport, unsigned port)
{
	int c = vsock_socket(type, cport);
	int r = do_connect(c, port);

	if (r == 0)
		die("connect to port %u with no listener succeeded", port);
	printf("refused %s type=%s cport=%u sport=%u errno=%d\n", name,
	       type == SOCK_STREAM ? "stream" : "seqpacket", cport, port, errno);
	close(c);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Throughput: a forked reader drains total bytes sent in 64 KiB writes. */
static void bulk(size_t total)
{
	static unsigned char buf[65536];
	int l = vsock_socket(SOCK_STREAM, 7000), c, s;
	pid_t pid;
	double t0;
	size_t done = 0;
	int st;

	if (listen(l, 1) < 0)
		die("listen 7000");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		s = accept(l, NULL, NULL);
		if (s < 0)
			die("accept");
		while (recv(s, buf, sizeof(buf), 0) > 0)
			;
		_exit(0);
	}
	c = vsock_socket(SOCK_STREAM, 7001);
	if (do_connect(c, 7000) < 0)
		die("connect 7000");
	fill(buf, sizeof(buf), 9);
	t0 = now();
	while (done < total) {
		size_t want = total - done < sizeof(buf) ? total - done : sizeof(buf);
		ssize_t n = send(c, buf, want, 0);

		if (n <= 0)
			die("bulk send");
		done += (size_t)n;
	}
	shutdown(c, SHUT_WR);
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		die("bulk reader failed");
	printf("bulk bytes=%zu seconds=%.6f MBps=%.1f\n", total, now() - t0,
	       total / (now() - t0) / 1e6);
	close(c);
	close(l);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && strcmp(argv[1], "bulk") == 0) {
		char *end;
		unsigned long long mb = strtoull(argv[2], &end, 10);

		if (*end || mb == 0 || mb > 4096) {
			fprintf(stderr, "vsock-traffic: bulk size '%s' not in 1..4096 MiB\n", argv[2]);
			return 2;
		}
		bulk((size_t)mb << 20);
		return 0;
	}
	if (argc != 1) {
		fprintf(stderr, "usage: vsock-traffic [bulk MIB]\n");
		return 2;
	}
	stream_scenario();
	seqpacket_scenario();
	refused("r1", SOCK_STREAM, 6002, 5999);
	refused("r2", SOCK_SEQPACKET, 6003, 5998);
	printf("done\n");
	return 0;
}
