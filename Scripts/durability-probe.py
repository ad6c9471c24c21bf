#!/usr/bin/env python3
"""Does a SIGKILLed SecantusDB keep the writes it acknowledged?

    ~/.cache/nocobridge/venv/bin/python Scripts/durability-probe.py [--sync-on-commit]

Starts a server of its own on a free port, inserts 500 documents one by one with majority
write concern, SIGKILLs it at once, starts it again on the same storage and counts them.
mongod journals a majority write before acknowledging it, so it would keep all 500; this is
why Scripts/lib.sh starts SecantusDB with --sync-on-commit.
"""
import os, shutil, signal, socket, subprocess, sys, tempfile, time
from pymongo import MongoClient

SERVER = os.path.join(os.environ.get("NB_VENV", os.path.expanduser("~/.cache/nocobridge/venv")), "bin/secantusd-py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port, storage, extra):
    proc = subprocess.Popen([SERVER, "--host", "127.0.0.1", "--port", str(port), "--storage-path", storage] + extra,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("SecantusDB did not start")


def main():
    extra = sys.argv[1:]
    port, home = free_port(), tempfile.mkdtemp(prefix="nbdurability-")
    url = f"mongodb://127.0.0.1:{port}/?replicaSet=secantus&serverSelectionTimeoutMS=5000"
    try:
        proc = start(port, home + "/mongo", extra)
        with MongoClient(url, w="majority") as client:
            for i in range(500):
                client.probe.t.insert_one({"k": i})
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc = start(port, home + "/mongo", extra)
        with MongoClient(url) as client:
            kept = client.probe.t.count_documents({})
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        print(f"acknowledged 500, kept {kept} after SIGKILL ({' '.join(extra) or 'no flags'})")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
