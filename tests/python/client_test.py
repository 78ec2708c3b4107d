"""Drive a running Legate agent with py-consul, a real third-party Consul client.

Usage: client_test.py HOST PORT NODE_NAME

Every step asserts its result; the first failure prints what went wrong and exits 1.
Nothing sleeps blindly: waits poll a condition until a deadline.
"""

import sys
import threading
import time
import traceback

import consul
from consul import Check

DEADLINE_S = 10.0
STEP = ["start"]


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def step(name):
    STEP[0] = name
    print(f"--- {name}", flush=True)


def wait_for(probe, what, deadline_s=DEADLINE_S):
    end = time.monotonic() + deadline_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(0.05)


def kv(c):
    step("kv put/get")
    check(c.kv.put("py/a", "hello") is True, "put py/a")
    index, entry = c.kv.get("py/a")
    check(entry is not None, "py/a exists")
    check(entry["Value"] == b"hello", f"value bytes: {entry!r}")
    check(entry["Key"] == "py/a", f"key: {entry!r}")
    check(int(index) >= 1, f"index {index}")
    check(int(index) == entry["ModifyIndex"], f"index {index} vs {entry!r}")
    check(c.kv.get("py/missing")[1] is None, "a missing key is None")

    step("kv blocking get: no change, short wait")
    same_index, same = c.kv.get("py/a", index=index, wait="1s")
    check(same_index == index, f"index unchanged: {same_index} vs {index}")
    check(same["Value"] == b"hello", f"value unchanged: {same!r}")

    step("kv blocking get: woken by a write")
    result = {}

    def blocking_get():
        result["answer"] = c.kv.get("py/a", index=index, wait="5s")

    watcher = threading.Thread(target=blocking_get)
    watcher.start()
    check(c.kv.put("py/a", "world") is True, "second put")
    watcher.join(timeout=15)
    check(not watcher.is_alive(), "the blocking get returned")
    new_index, new_entry = result["answer"]
    check(int(new_index) > int(index), f"index moved: {new_index} > {index}")
    check(new_entry["Value"] == b"world", f"new value: {new_entry!r}")

    step("kv cas")
    modify = new_entry["ModifyIndex"]
    check(c.kv.put("py/a", "x", cas=0) is False, "cas=0 on an existing key")
    check(c.kv.put("py/a", "x", cas=modify + 1000) is False, "cas with a stale index")
    check(c.kv.put("py/a", "cas-ok", cas=modify) is True, "cas with the current index")
    check(c.kv.get("py/a")[1]["Value"] == b"cas-ok", "cas value written")
    check(c.kv.put("py/new", "n", cas=0) is True, "cas=0 on an absent key")
    flags = 0xE0F69A2BAA414DE0
    check(c.kv.put("py/flags", "f", flags=flags) is True, "put with u64 flags")
    check(c.kv.get("py/flags")[1]["Flags"] == flags, "u64 flags round-trip")

    step("kv recurse and keys")
    for key, value in (("py/r/1", "one"), ("py/r/2", "two"), ("py/r/sub/3", "three")):
        check(c.kv.put(key, value) is True, f"put {key}")
    _, entries = c.kv.get("py/r/", recurse=True)
    check([e["Key"] for e in entries] == ["py/r/1", "py/r/2", "py/r/sub/3"], f"recurse keys: {entries!r}")
    check([e["Value"] for e in entries] == [b"one", b"two", b"three"], f"recurse values: {entries!r}")
    _, keys = c.kv.get("py/r/", keys=True, separator="/")
    check(keys == ["py/r/1", "py/r/2", "py/r/sub/"], f"keys with separator: {keys!r}")

    step("kv delete")
    check(c.kv.delete("py/new") is True, "delete py/new")
    check(c.kv.get("py/new")[1] is None, "py/new is gone")
    check(c.kv.delete("py/r/", recurse=True) is True, "delete py/r/ recursively")
    check(c.kv.get("py/r/", recurse=True)[1] is None, "py/r/ is empty")
    current = c.kv.get("py/a")[1]["ModifyIndex"]
    check(c.kv.delete("py/a", cas=current + 1000) is False, "delete cas with a stale index")
    check(c.kv.delete("py/a", cas=current) is True, "delete cas with the current index")
    check(c.kv.get("py/a")[1] is None, "py/a is gone")


def sessions(c, node):
    step("session create / info / list / node")
    sid = c.session.create(name="py-lock", ttl=10, behavior="release", lock_delay=0)
    check(isinstance(sid, str) and len(sid) == 36, f"session id {sid!r}")
    _, info = c.session.info(sid)
    check(info is not None, "info finds the session")
    check(info["ID"] == sid and info["Name"] == "py-lock", f"info: {info!r}")
    check(info["TTL"] == "10s", f"TTL: {info!r}")
    check(info["Behavior"] == "release", f"Behavior: {info!r}")
    check(info["Node"] == node, f"Node: {info!r}")
    _, listed = c.session.list()
    check(sid in [s["ID"] for s in listed], f"list: {listed!r}")
    _, on_node = c.session.node(node)
    check(sid in [s["ID"] for s in on_node], f"node sessions: {on_node!r}")

    step("kv acquire / release")
    other = c.session.create(name="py-other", lock_delay=0)
    check(c.kv.put("py/lock", "mine", acquire=sid) is True, "acquire")
    _, held = c.kv.get("py/lock")
    check(held.get("Session") == sid, f"held by sid: {held!r}")
    check(held["LockIndex"] == 1, f"LockIndex: {held!r}")
    check(c.kv.put("py/lock", "theirs", acquire=other) is False, "another session is refused")
    check(c.kv.put("py/lock", "", release=other) is False, "a non-holder cannot release")
    check(c.kv.put("py/lock", "mine", release=sid) is True, "release")
    _, released = c.kv.get("py/lock")
    check(released.get("Session") is None, f"released: {released!r}")
    check(released["LockIndex"] == 1, f"LockIndex kept: {released!r}")

    step("session renew")
    renewed = c.session.renew(sid)
    check(renewed is not None and renewed["ID"] == sid, f"renew: {renewed!r}")
    check(renewed["TTL"] == "10s", f"renewed TTL: {renewed!r}")
    try:
        c.session.renew("00000000-0000-4000-8000-000000000000")
        raise AssertionError("renewing an unknown session should raise NotFound")
    except consul.NotFound:
        pass

    step("session destroy (behavior delete)")
    ephemeral = c.session.create(name="py-eph", behavior="delete", lock_delay=0)
    check(c.kv.put("py/eph", "e", acquire=ephemeral) is True, "acquire py/eph")
    check(c.session.destroy(ephemeral) is True, "destroy the delete-behavior session")
    check(c.kv.get("py/eph")[1] is None, "py/eph deleted with its session")
    check(c.session.destroy(sid) is True, "destroy sid")
    check(c.session.destroy(other) is True, "destroy other")
    check(c.session.info(sid)[1] is None, "sid is gone")
    _, listed = c.session.list()
    check(sid not in [s["ID"] for s in listed], f"sid not listed: {listed!r}")


def services(c, node):
    step("agent service register with a TTL check")
    ok = c.agent.service.register("pyweb", service_id="pyweb1", port=8081, tags=["py"], check=Check.ttl("30s"))
    check(ok is True, "register pyweb")
    check("pyweb1" in c.agent.services(), "agent services lists pyweb1")
    agent_checks = c.agent.checks()
    check("service:pyweb1" in agent_checks, f"agent checks: {agent_checks!r}")
    check(agent_checks["service:pyweb1"]["Status"] == "critical", "a TTL check starts critical")
    wait_for(lambda: c.health.service("pyweb")[1], "pyweb in the health endpoint")
    check(c.health.service("pyweb", passing=True)[1] == [], "critical is filtered by passing=True")

    step("agent check ttl_pass / health passing")
    check(c.agent.check.ttl_pass("service:pyweb1", "all good") is True, "ttl_pass")
    nodes = wait_for(lambda: c.health.service("pyweb", passing=True)[1], "pyweb passing")
    check(len(nodes) == 1, f"one passing instance: {nodes!r}")
    check(nodes[0]["Service"]["ID"] == "pyweb1", f"service: {nodes[0]!r}")
    check(nodes[0]["Service"]["Port"] == 8081, f"port: {nodes[0]!r}")
    check(nodes[0]["Node"]["Node"] == node, f"node: {nodes[0]!r}")
    statuses = {ch["CheckID"]: ch["Status"] for ch in nodes[0]["Checks"]}
    check(statuses.get("service:pyweb1") == "passing", f"checks: {statuses!r}")
    check(statuses.get("serfHealth") == "passing", f"checks: {statuses!r}")

    step("catalog service")
    index, instances = c.catalog.service("pyweb")
    check(int(index) >= 1, f"index {index}")
    check(len(instances) == 1, f"instances: {instances!r}")
    check(instances[0]["ServiceID"] == "pyweb1", f"ServiceID: {instances[0]!r}")
    check(instances[0]["ServicePort"] == 8081, f"ServicePort: {instances[0]!r}")
    check(instances[0]["ServiceTags"] == ["py"], f"ServiceTags: {instances[0]!r}")
    check("pyweb" in c.catalog.services()[1], "catalog services lists pyweb")

    step("agent service deregister")
    check(c.agent.service.deregister("pyweb1") is True, "deregister")
    check("pyweb1" not in c.agent.services(), "gone from the agent")
    wait_for(lambda: c.catalog.service("pyweb")[1] == [], "pyweb gone from the catalog")


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, node = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print(f"py-consul {consul.__version__} against {host}:{port} (node {node})", flush=True)
    c = consul.Consul(host=host, port=port)
    try:
        step("status and agent self")
        check(c.status.leader(), "a leader")
        me = c.agent.self()
        check(me["Config"]["NodeName"] == node, f"agent self: {me['Config']!r}")
        kv(c)
        sessions(c, node)
        services(c, node)
    except Exception:  # noqa: BLE001 - every failure ends the run with its story
        print(f"FAILED at step {STEP[0]!r}:", file=sys.stderr)
        traceback.print_exc()
        return 1
    print("ALL OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
