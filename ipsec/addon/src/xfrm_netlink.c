/*
 * sealnet XFRM netlink transport (Node-API).
 *
 *   transact(request: Buffer, timeoutMs: number): Promise<Buffer[]>
 *
 * Opens a NETLINK_XFRM socket, sends one prepared request, and resolves with every reply
 * message of that request (one Buffer per netlink message, header included), up to and
 * including the message that ends it: NLMSG_DONE for a dump, NLMSG_ERROR (an ACK or an errno)
 * otherwise. It is deliberately thin: it reads nlmsghdr only to split datagrams and to see
 * where the reply ends; every XFRM structure is encoded and decoded in ipsec/xfrm-msg.ts.
 * A netlink error is data (the NLMSG_ERROR message); only a failed system call rejects, with
 * an Error carrying `errno`, `code` and `syscall`.
 *
 * One socket per call, opened on a libuv worker thread and closed before the call resolves:
 * no state outlives a call, calls may run concurrently, and the socket lives in the network
 * namespace of the process (tests run it under `ip netns exec`).
 *
 * Requests and replies may hold SA keys: both are wiped before their memory is freed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/netlink.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif
#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif

/* A dump of tens of thousands of SAs is a few MB; a runaway reply must not eat memory. */
#define MAX_REPLY_BYTES (64u * 1024u * 1024u)
/* The largest request sealnet builds is a few hundred bytes. */
#define MAX_REQUEST_BYTES (64u * 1024u)
#define NL_HDR_LEN ((size_t)NLMSG_HDRLEN)

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  /* input */
  uint8_t *request;
  size_t request_len;
  int timeout_ms;
  /* output: reply bytes as received, and the [offset, length) of each message of ours */
  uint8_t *reply;
  size_t reply_len;
  size_t reply_cap;
  size_t *msg_off;
  size_t *msg_len;
  size_t msg_count;
  size_t msg_cap;
  /* failure: errno and the system call that set it; 0 on success */
  int err;
  const char *syscall;
} transact_t;

static void wipe_free(uint8_t *p, size_t len) {
  if (p == NULL) return;
  explicit_bzero(p, len);
  free(p);
}

static void transact_free(transact_t *t) {
  wipe_free(t->request, t->request_len);
  wipe_free(t->reply, t->reply_cap);
  free(t->msg_off);
  free(t->msg_len);
  free(t);
}

static void fail(transact_t *t, const char *syscall, int err) {
  t->err = err;
  t->syscall = syscall;
}

static int reserve_reply(transact_t *t, size_t extra) {
  if (extra > MAX_REPLY_BYTES || t->reply_len > MAX_REPLY_BYTES - extra) return -1;
  size_t need = t->reply_len + extra;
  if (need <= t->reply_cap) return 0;
  size_t cap = t->reply_cap == 0 ? 65536 : t->reply_cap;
  while (cap < need) cap *= 2;
  if (cap > MAX_REPLY_BYTES) cap = MAX_REPLY_BYTES;
  /* Not realloc: the old block may hold key material and must be wiped, not abandoned. */
  uint8_t *grown = malloc(cap);
  if (grown == NULL) return -1;
  if (t->reply_len > 0) memcpy(grown, t->reply, t->reply_len);
  wipe_free(t->reply, t->reply_cap);
  t->reply = grown;
  t->reply_cap = cap;
  return 0;
}

static int push_message(transact_t *t, size_t off, size_t len) {
  if (t->msg_count == t->msg_cap) {
    size_t cap = t->msg_cap == 0 ? 64 : t->msg_cap * 2;
    size_t *o = realloc(t->msg_off, cap * sizeof(size_t));
    if (o == NULL) return -1;
    t->msg_off = o;
    size_t *l = realloc(t->msg_len, cap * sizeof(size_t));
    if (l == NULL) return -1;
    t->msg_len = l;
    t->msg_cap = cap;
  }
  t->msg_off[t->msg_count] = off;
  t->msg_len[t->msg_count] = len;
  t->msg_count++;
  return 0;
}

/*
 * Walks the messages of one datagram stored at reply[start, start+len). Records ours (matching
 * sequence number); returns 1 when the terminating message was seen, 0 when more datagrams are
 * expected, -1 on a malformed datagram (errno-style code in *err).
 */
static int walk_datagram(transact_t *t, size_t start, size_t len, uint32_t seq, int dump, int *err) {
  size_t pos = 0;
  while (pos < len) {
    if (len - pos < NL_HDR_LEN) {
      *err = EBADMSG;
      return -1;
    }
    struct nlmsghdr hdr;
    memcpy(&hdr, t->reply + start + pos, sizeof hdr);
    size_t mlen = hdr.nlmsg_len;
    if (mlen < NL_HDR_LEN || mlen > len - pos) {
      *err = EBADMSG;
      return -1;
    }
    if (hdr.nlmsg_seq == seq) {
      if (push_message(t, start + pos, mlen) < 0) {
        *err = ENOMEM;
        return -1;
      }
      if (hdr.nlmsg_type == NLMSG_ERROR) return 1;
      if (dump && hdr.nlmsg_type == NLMSG_DONE) return 1;
    }
    size_t aligned = NLMSG_ALIGN(mlen);
    if (aligned > len - pos) break;
    pos += aligned;
  }
  return 0;
}

static void execute(napi_env env, void *data) {
  (void)env;
  transact_t *t = data;
  struct nlmsghdr req;
  memcpy(&req, t->request, sizeof req);
  const int dump = (req.nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;

  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_XFRM);
  if (fd < 0) {
    fail(t, "socket", errno);
    return;
  }
  /* Extended ACKs carry the kernel's own sentence ("Requested AEAD algorithm not found");
   * capped ACKs do not echo the request (which may hold a key) back. Both are optional. */
  int one = 1;
  (void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  struct timeval tv = {.tv_sec = t->timeout_ms / 1000, .tv_usec = (t->timeout_ms % 1000) * 1000};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
    fail(t, "setsockopt", errno);
    goto out;
  }
  struct sockaddr_nl local;
  memset(&local, 0, sizeof local);
  local.nl_family = AF_NETLINK;
  if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0) {
    fail(t, "bind", errno);
    goto out;
  }
  struct sockaddr_nl kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  ssize_t sent;
  do {
    sent = sendto(fd, t->request, t->request_len, 0, (struct sockaddr *)&kernel, sizeof kernel);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    fail(t, "sendto", errno);
    goto out;
  }
  if ((size_t)sent != t->request_len) {
    fail(t, "sendto", EMSGSIZE);
    goto out;
  }

  for (;;) {
    /* Learn the datagram's size first so no reply is ever truncated. */
    ssize_t want;
    do {
      want = recv(fd, NULL, 0, MSG_PEEK | MSG_TRUNC);
    } while (want < 0 && errno == EINTR);
    if (want < 0) {
      fail(t, "recv", errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno);
      goto out;
    }
    size_t size = (size_t)want;
    if (reserve_reply(t, size == 0 ? 1 : size) < 0) {
      fail(t, "recv", ENOBUFS);
      goto out;
    }
    struct sockaddr_nl from;
    socklen_t from_len = sizeof from;
    ssize_t got;
    do {
      got = recvfrom(fd, t->reply + t->reply_len, size, 0, (struct sockaddr *)&from, &from_len);
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
      fail(t, "recvfrom", errno == EAGAIN || errno == EWOULDBLOCK ? ETIMEDOUT : errno);
      goto out;
    }
    /* Only the kernel (port 0) answers; any other sender is ignored. */
    if (from_len != sizeof from || from.nl_family != AF_NETLINK || from.nl_pid != 0) continue;
    size_t start = t->reply_len;
    t->reply_len += (size_t)got;
    int werr = 0;
    int done = walk_datagram(t, start, (size_t)got, req.nlmsg_seq, dump, &werr);
    if (done < 0) {
      fail(t, "recvfrom", werr);
      goto out;
    }
    if (done > 0) break;
  }

out:
  close(fd);
}

static napi_value make_error(napi_env env, transact_t *t) {
  const char *name = strerrorname_np(t->err);
  char code[32];
  if (name != NULL) {
    snprintf(code, sizeof code, "%s", name);
  } else {
    snprintf(code, sizeof code, "E%d", t->err);
  }
  char text[256];
  snprintf(text, sizeof text, "NETLINK_XFRM %s failed: %s (%s)", t->syscall, strerror(t->err), code);
  napi_value msg, err, v;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &err);
  napi_create_int32(env, t->err, &v);
  napi_set_named_property(env, err, "errno", v);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, err, "code", v);
  napi_create_string_utf8(env, t->syscall, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, err, "syscall", v);
  return err;
}

static void complete(napi_env env, napi_status status, void *data) {
  transact_t *t = data;
  if (status != napi_ok && t->err == 0) fail(t, "async work", ECANCELED);
  if (t->err != 0) {
    napi_reject_deferred(env, t->deferred, make_error(env, t));
  } else {
    napi_value arr;
    napi_create_array_with_length(env, t->msg_count, &arr);
    for (size_t i = 0; i < t->msg_count; i++) {
      napi_value buf;
      void *unused;
      if (napi_create_buffer_copy(env, t->msg_len[i], t->reply + t->msg_off[i], &unused, &buf) != napi_ok) {
        fail(t, "napi_create_buffer_copy", ENOMEM);
        napi_reject_deferred(env, t->deferred, make_error(env, t));
        goto done;
      }
      napi_set_element(env, arr, (uint32_t)i, buf);
    }
    napi_resolve_deferred(env, t->deferred, arr);
  }
done:
  napi_delete_async_work(env, t->work);
  transact_free(t);
}

static napi_value throw_type_error(napi_env env, const char *text) {
  napi_throw_type_error(env, NULL, text);
  return NULL;
}

static napi_value transact(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    return throw_type_error(env, "transact(request: Buffer, timeoutMs: number)");
  }
  bool is_buffer = false;
  napi_is_buffer(env, argv[0], &is_buffer);
  if (!is_buffer) return throw_type_error(env, "transact: request must be a Buffer");
  void *bytes;
  size_t len;
  napi_get_buffer_info(env, argv[0], &bytes, &len);
  if (len < NL_HDR_LEN || len > MAX_REQUEST_BYTES) {
    return throw_type_error(env, "transact: request is not a single netlink message of a sane size");
  }
  struct nlmsghdr hdr;
  memcpy(&hdr, bytes, sizeof hdr);
  if (hdr.nlmsg_len != len) return throw_type_error(env, "transact: nlmsg_len does not match the request length");
  if ((hdr.nlmsg_flags & NLM_F_REQUEST) == 0) return throw_type_error(env, "transact: NLM_F_REQUEST is not set");
  /* Without ACK or DUMP a successful request has no reply at all and would wait for the timeout. */
  if ((hdr.nlmsg_flags & NLM_F_ACK) == 0 && (hdr.nlmsg_flags & NLM_F_DUMP) != NLM_F_DUMP) {
    return throw_type_error(env, "transact: request must set NLM_F_ACK or NLM_F_DUMP");
  }
  int32_t timeout_ms = 0;
  if (napi_get_value_int32(env, argv[1], &timeout_ms) != napi_ok || timeout_ms < 1 || timeout_ms > 600000) {
    return throw_type_error(env, "transact: timeoutMs must be an integer in 1..600000");
  }

  transact_t *t = calloc(1, sizeof *t);
  if (t == NULL) return throw_type_error(env, "transact: out of memory");
  t->request = malloc(len);
  if (t->request == NULL) {
    free(t);
    return throw_type_error(env, "transact: out of memory");
  }
  memcpy(t->request, bytes, len);
  t->request_len = len;
  t->timeout_ms = timeout_ms;

  napi_value promise, name;
  napi_create_promise(env, &t->deferred, &promise);
  napi_create_string_utf8(env, "sealnet_xfrm_transact", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, execute, complete, t, &t->work) != napi_ok ||
      napi_queue_async_work(env, t->work) != napi_ok) {
    transact_free(t);
    return throw_type_error(env, "transact: cannot queue the request");
  }
  return promise;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "transact", NAPI_AUTO_LENGTH, transact, NULL, &fn);
  napi_set_named_property(env, exports, "transact", fn);
  return exports;
}
