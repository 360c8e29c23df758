// SPDX-License-Identifier: Apache-2.0
/*
 * sealnet_bpf: the few bpf(2) commands the agent needs on its pinned maps, as a Node-API addon.
 *
 * Why an addon: spawning `bpftool` costs a process start per call (or per batch file) and
 * a text round trip; a map of thousands of prefixes is synced with one call here
 * (measurements in routing/bpf/README.md). Everything is synchronous: each syscall takes
 * microseconds, and a batch of 5,000 updates a few milliseconds.
 *
 * Keys and values are Buffers whose layout routing/bpf/layout.ts defines; this file knows no
 * layout. Errors are thrown as Error objects with `code` (errno name, e.g. "ENOENT"), `errno`
 * (the number) and `syscall` ("bpf(BPF_MAP_UPDATE_ELEM)"), like Node's own system errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_PATH 4096
#define MAX_KEY 512
#define MAX_VALUE (64 * 1024)

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static uint64_t ptr(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

static const char *errno_name(int e)
{
	switch (e) {
	case ENOENT: return "ENOENT";
	case EEXIST: return "EEXIST";
	case E2BIG: return "E2BIG";
	case EINVAL: return "EINVAL";
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	case EBADF: return "EBADF";
	case ENOMEM: return "ENOMEM";
	case ENOSPC: return "ENOSPC";
	case EBUSY: return "EBUSY";
	case EFAULT: return "EFAULT";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case 524: return "ENOTSUPP"; /* kernel-internal, leaks out of bpf(2) */
	default: return "EUNKNOWN";
	}
}

static napi_value throw_errno(napi_env env, const char *what, int e, int64_t index)
{
	char msg[256];
	napi_value err, code, errno_v, syscall_v, msg_v, index_v;

	if (index >= 0)
		snprintf(msg, sizeof(msg), "bpf(%s) failed at element %lld: %s", what, (long long)index, strerror(e));
	else
		snprintf(msg, sizeof(msg), "bpf(%s) failed: %s", what, strerror(e));
	napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &msg_v);
	napi_create_string_utf8(env, errno_name(e), NAPI_AUTO_LENGTH, &code);
	napi_create_error(env, code, msg_v, &err);
	napi_set_named_property(env, err, "code", code);
	napi_create_int32(env, e, &errno_v);
	napi_set_named_property(env, err, "errno", errno_v);
	snprintf(msg, sizeof(msg), "bpf(%s)", what);
	napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &syscall_v);
	napi_set_named_property(env, err, "syscall", syscall_v);
	if (index >= 0) {
		napi_create_int64(env, index, &index_v);
		napi_set_named_property(env, err, "index", index_v);
	}
	napi_throw(env, err);
	return NULL;
}

static napi_value throw_type(napi_env env, const char *msg)
{
	napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
	return NULL;
}

/* Reads argument i as an int32 (fd, sizes, flags). */
static int arg_int(napi_env env, napi_value v, int32_t *out)
{
	return napi_get_value_int32(env, v, out) == napi_ok ? 0 : -1;
}

static int arg_buffer(napi_env env, napi_value v, void **data, size_t *len)
{
	bool is;

	if (napi_is_buffer(env, v, &is) != napi_ok || !is)
		return -1;
	return napi_get_buffer_info(env, v, data, len) == napi_ok ? 0 : -1;
}

static napi_value make_buffer(napi_env env, const void *src, size_t len)
{
	napi_value out;
	void *data;

	if (napi_create_buffer_copy(env, len, src, &data, &out) != napi_ok)
		return NULL;
	return out;
}

/* objGet(path: string): number — BPF_OBJ_GET on a pinned path; the fd is close-on-exec. */
static napi_value obj_get(napi_env env, napi_callback_info info)
{
	size_t argc = 1, len;
	napi_value argv[1], out;
	char path[MAX_PATH];
	union bpf_attr attr;
	long fd;

	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &len) != napi_ok || len == 0 || len >= sizeof(path) - 1)
		return throw_type(env, "objGet(path): path must be a non-empty string");
	memset(&attr, 0, sizeof(attr));
	attr.pathname = ptr(path);
	fd = sys_bpf(BPF_OBJ_GET, &attr);
	if (fd < 0)
		return throw_errno(env, "BPF_OBJ_GET", errno, -1);
	napi_create_int32(env, (int32_t)fd, &out);
	return out;
}

/* close(fd: number): void */
static napi_value close_fd(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	int32_t fd;

	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 1 || arg_int(env, argv[0], &fd) < 0 || fd < 0)
		return throw_type(env, "close(fd): fd must be a non-negative integer");
	close(fd);
	return NULL;
}

/* mapInfo(fd): {id, type, keySize, valueSize, maxEntries, flags, name} */
static napi_value map_info(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], out, v;
	struct bpf_map_info mi;
	union bpf_attr attr;
	int32_t fd;

	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 1 || arg_int(env, argv[0], &fd) < 0)
		return throw_type(env, "mapInfo(fd): fd must be an integer");
	memset(&mi, 0, sizeof(mi));
	memset(&attr, 0, sizeof(attr));
	attr.info.bpf_fd = (uint32_t)fd;
	attr.info.info_len = sizeof(mi);
	attr.info.info = ptr(&mi);
	if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) < 0)
		return throw_errno(env, "BPF_OBJ_GET_INFO_BY_FD", errno, -1);
	napi_create_object(env, &out);
	napi_create_uint32(env, mi.id, &v);
	napi_set_named_property(env, out, "id", v);
	napi_create_uint32(env, mi.type, &v);
	napi_set_named_property(env, out, "type", v);
	napi_create_uint32(env, mi.key_size, &v);
	napi_set_named_property(env, out, "keySize", v);
	napi_create_uint32(env, mi.value_size, &v);
	napi_set_named_property(env, out, "valueSize", v);
	napi_create_uint32(env, mi.max_entries, &v);
	napi_set_named_property(env, out, "maxEntries", v);
	napi_create_uint32(env, mi.map_flags, &v);
	napi_set_named_property(env, out, "flags", v);
	napi_create_string_utf8(env, mi.name, strnlen(mi.name, sizeof(mi.name)), &v);
	napi_set_named_property(env, out, "name", v);
	return out;
}

/* lookup(fd, key: Buffer, valueSize): Buffer | undefined (ENOENT). valueSize is the full
 * userspace size, i.e. for per-CPU maps round_up(value, 8) * possible CPUs. */
static napi_value lookup(napi_env env, napi_callback_info info)
{
	size_t argc = 3, klen;
	napi_value argv[3], out;
	union bpf_attr attr;
	int32_t fd, vsize;
	void *key, *val;

	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 3 || arg_int(env, argv[0], &fd) < 0 || arg_buffer(env, argv[1], &key, &klen) < 0 || arg_int(env, argv[2], &vsize) < 0 || vsize <= 0 || vsize > 16 * MAX_VALUE)
		return throw_type(env, "lookup(fd, key: Buffer, valueSize: number)");
	val = calloc(1, (size_t)vsize);
	if (val == NULL)
		return throw_errno(env, "BPF_MAP_LOOKUP_ELEM", ENOMEM, -1);
	memset(&attr, 0, sizeof(attr));
	attr.map_fd = (uint32_t)fd;
	attr.key = ptr(key);
	attr.value = ptr(val);
	if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &attr) < 0) {
		int e = errno;
		free(val);
		if (e == ENOENT) {
			napi_get_undefined(env, &out);
			return out;
		}
		return throw_errno(env, "BPF_MAP_LOOKUP_ELEM", e, -1);
	}
	out = make_buffer(env, val, (size_t)vsize);
	free(val);
	return out;
}

/* updateMany(fd, keys: Buffer, values: Buffer, keySize, valueSize, flags): number of elements
 * written. Stops at the first failure and throws with `index` (elements before it are in). */
static napi_value update_many(napi_env env, napi_callback_info info)
{
	size_t argc = 6, klen, vlen, n, i;
	napi_value argv[6], out;
	int32_t fd, ksize, vsize, flags;
	uint8_t *keys, *vals;
	union bpf_attr attr;

	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 6 || arg_int(env, argv[0], &fd) < 0 || arg_buffer(env, argv[1], (void **)&keys, &klen) < 0 ||
	    arg_buffer(env, argv[2], (void **)&vals, &vlen) < 0 || arg_int(env, argv[3], &ksize) < 0 ||
	    arg_int(env, argv[4], &vsize) < 0 || arg_int(env, argv[5], &flags) < 0 || ksize <= 0 || vsize <= 0)
		return throw_type(env, "updateMany(fd, keys: Buffer, values: Buffer, keySize, valueSize, flags)");
	if (klen % (size_t)ksize != 0 || vlen % (size_t)vsize != 0 || klen / (size_t)ksize != vlen / (size_t)vsize)
		return throw_type(env, "updateMany: keys and values must hold the same number of whole elements");
	n = klen / (size_t)ksize;
	for (i = 0; i < n; i++) {
		memset(&attr, 0, sizeof(attr));
		attr.map_fd = (uint32_t)fd;
		attr.key = ptr(keys + i * (size_t)ksize);
		attr.value = ptr(vals + i * (size_t)vsize);
		attr.flags = (uint64_t)(uint32_t)flags;
		if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr) < 0)
			return throw_errno(env, "BPF_MAP_UPDATE_ELEM", errno, (int64_t)i);
	}
	napi_create_uint32(env, (uint32_t)n, &out);
	return out;
}

/* deleteMany(fd, keys: Buffer, keySize): number actually deleted (ENOENT is skipped). */
static napi_value delete_many(napi_env env, napi_callback_info info)
{
	size_t argc = 3, klen, n, i;
	napi_value argv[3], out;
	int32_t fd, ksize;
	uint8_t *keys;
	union bpf_attr attr;
	uint32_t deleted = 0;

	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 3 || arg_int(env, argv[0], &fd) < 0 || arg_buffer(env, argv[1], (void **)&keys, &klen) < 0 || arg_int(env, argv[2], &ksize) < 0 || ksize <= 0 || klen % (size_t)ksize != 0)
		return throw_type(env, "deleteMany(fd, keys: Buffer, keySize)");
	n = klen / (size_t)ksize;
	for (i = 0; i < n; i++) {
		memset(&attr, 0, sizeof(attr));
		attr.map_fd = (uint32_t)fd;
		attr.key = ptr(keys + i * (size_t)ksize);
		if (sys_bpf(BPF_MAP_DELETE_ELEM, &attr) < 0) {
			if (errno == ENOENT)
				continue;
			return throw_errno(env, "BPF_MAP_DELETE_ELEM", errno, (int64_t)i);
		}
		deleted++;
	}
	napi_create_uint32(env, deleted, &out);
	return out;
}

/* dump(fd, keySize, valueSize): {keys: Buffer, values: Buffer, count} — every element, by
 * BPF_MAP_GET_NEXT_KEY + BPF_MAP_LOOKUP_ELEM. An element deleted between the two calls is
 * skipped; the walk restarts from the first key if the kernel loses its place (ENOENT on a
 * key it just returned cannot happen for LPM tries, which restart by themselves). */
static napi_value dump(napi_env env, napi_callback_info info)
{
	size_t argc = 3, cap = 256, n = 0;
	napi_value argv[3], out, v;
	int32_t fd, ksize, vsize;
	uint8_t cur[MAX_KEY], next[MAX_KEY];
	uint8_t *keys = NULL, *vals = NULL;
	union bpf_attr attr;
	int have_cur = 0;

	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 3 || arg_int(env, argv[0], &fd) < 0 || arg_int(env, argv[1], &ksize) < 0 || arg_int(env, argv[2], &vsize) < 0 ||
	    ksize <= 0 || ksize > MAX_KEY || vsize <= 0 || vsize > 16 * MAX_VALUE)
		return throw_type(env, "dump(fd, keySize, valueSize)");
	keys = malloc(cap * (size_t)ksize);
	vals = malloc(cap * (size_t)vsize);
	if (keys == NULL || vals == NULL)
		goto nomem;
	for (;;) {
		memset(&attr, 0, sizeof(attr));
		attr.map_fd = (uint32_t)fd;
		attr.key = have_cur ? ptr(cur) : 0;
		attr.next_key = ptr(next);
		if (sys_bpf(BPF_MAP_GET_NEXT_KEY, &attr) < 0) {
			if (errno == ENOENT)
				break;
			int e = errno;
			free(keys);
			free(vals);
			return throw_errno(env, "BPF_MAP_GET_NEXT_KEY", e, (int64_t)n);
		}
		memcpy(cur, next, (size_t)ksize);
		have_cur = 1;
		if (n == cap) {
			uint8_t *k2, *v2;
			cap *= 2;
			k2 = realloc(keys, cap * (size_t)ksize);
			if (k2 == NULL)
				goto nomem;
			keys = k2;
			v2 = realloc(vals, cap * (size_t)vsize);
			if (v2 == NULL)
				goto nomem;
			vals = v2;
		}
		memset(&attr, 0, sizeof(attr));
		attr.map_fd = (uint32_t)fd;
		attr.key = ptr(cur);
		attr.value = ptr(vals + n * (size_t)vsize);
		if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &attr) < 0) {
			if (errno == ENOENT)
				continue; /* deleted meanwhile */
			int e = errno;
			free(keys);
			free(vals);
			return throw_errno(env, "BPF_MAP_LOOKUP_ELEM", e, (int64_t)n);
		}
		memcpy(keys + n * (size_t)ksize, cur, (size_t)ksize);
		n++;
	}
	napi_create_object(env, &out);
	v = make_buffer(env, keys, n * (size_t)ksize);
	napi_set_named_property(env, out, "keys", v);
	v = make_buffer(env, vals, n * (size_t)vsize);
	napi_set_named_property(env, out, "values", v);
	napi_create_uint32(env, (uint32_t)n, &v);
	napi_set_named_property(env, out, "count", v);
	free(keys);
	free(vals);
	return out;
nomem:
	free(keys);
	free(vals);
	return throw_errno(env, "dump", ENOMEM, -1);
}

/*
 * noDump(): prctl(PR_SET_DUMPABLE, 0) on this process; returns PR_GET_DUMPABLE afterwards
 * (0 when it took), or -errno when a prctl failed.
 * Not about bpf(2), but this is the agent's one native module of its own, and prctl acts only
 * on the calling process: no helper tool can do it for the agent. With "dumpable" off the
 * kernel writes no core file and refuses ptrace attach and /proc/<pid>/mem to non-root
 * (key material in the agent's heap). Reset by execve, so children are unaffected.
 */
static napi_value no_dump(napi_env env, napi_callback_info info)
{
	napi_value out;
	(void)info;
	int now;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		now = -errno;
	} else {
		now = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
		if (now < 0)
			now = -errno;
	}
	napi_create_int32(env, now, &out);
	return out;
}

static napi_value init(napi_env env, napi_value exports)
{
	napi_property_descriptor props[] = {
		{ "objGet", NULL, obj_get, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "close", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "mapInfo", NULL, map_info, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "lookup", NULL, lookup, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "updateMany", NULL, update_many, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "deleteMany", NULL, delete_many, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "dump", NULL, dump, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "noDump", NULL, no_dump, NULL, NULL, NULL, napi_enumerable, NULL },
	};
	napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
