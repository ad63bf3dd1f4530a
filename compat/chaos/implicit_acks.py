"""List librdkafka's implicit acknowledgements in a run's client debug output.

Run with CHAOS_PRODUCER_DEBUG=msg,eos (see workloads.py) and pass the harness's stderr:

    python3 compat/chaos/implicit_acks.py run.err

For each IMPLICITACK (messages reported delivered, offset unknown, because a later batch of the
same idempotent producer succeeded) it prints the errors the implicitly acknowledged messages
had met and on which broker. REQUEST_TIMED_OUT on the broker that then acknowledged the later
batch is the safe case (the batch had been appended there); an error that librdkafka marks
"MsgNotPersisted" means the messages may never have been written (README, seed 11).
"""

import collections
import re
import sys

LINE = re.compile(r"%7\|([\d.]+)\|(\w+)\|rdkafka#(producer-\d+)\| \[thrd:([^\]]*)\]: (.*)")
PARTITION = re.compile(r"(\S+) \[(\d+)\]")
ERROR = re.compile(r"\(MsgId (\d+), BaseSeq \d+\) encountered error: (.*)$")


def implicit_acks(lines):
    events = collections.defaultdict(list)
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        _, tag, producer, thread, msg = m.groups()
        p = PARTITION.search(msg.split(": ", 1)[-1])
        if p:
            events[(producer, p.group(1), p.group(2))].append((tag, thread, msg))
    for key, evs in events.items():
        for i, (tag, thread, msg) in enumerate(evs):
            if tag != "IMPLICITACK":
                continue
            lo, hi = map(int, re.search(r"msgids (\d+)\.\.(\d+)", msg).groups())
            errors = []
            for _, err_thread, err_msg in evs[:i]:
                e = ERROR.search(err_msg)
                if e and lo <= int(e.group(1)) <= hi:
                    errors.append((err_thread, e.group(2)))
            suspect = any("NotPersisted" in err or "Retry operation" in err for _, err in errors)
            yield key, (lo, hi), thread, errors, suspect


def main(argv):
    found = 0
    for path in argv[1:]:
        with open(path, errors="replace") as f:
            for key, (lo, hi), thread, errors, suspect in implicit_acks(f):
                found += suspect
                print(f"{'SUSPECT' if suspect else 'ok     '} {path} {key[0]} {key[1]} [{key[2]}] "
                      f"msgids {lo}..{hi} acked via {thread}")
                for err_thread, err in errors:
                    print(f"        earlier: {err_thread}: {err}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
