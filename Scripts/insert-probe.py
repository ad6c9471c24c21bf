#!/usr/bin/env python3
# What a bulk insert costs on a MongoDB-protocol server with the options the bridge sends and
# the change streams it keeps open: 5,000 inserts in bulks of 1,000 (the benchmark's seed
# documents), with `w: "majority"` (and a wtimeout), a `comment`, without retryable writes, and
# with no stream, one stream on the collection, one on the database, or one per collection.
#   python3 Scripts/insert-probe.py MONGO_URL   (pymongo; Scripts/lib.sh puts it in its venv)
import sys, time, threading
from pymongo import MongoClient, InsertOne, WriteConcern
from bson import ObjectId
from bson.decimal128 import Decimal128

N = 5000
URL = sys.argv[1]
OTHERS = ("a", "b", "d")


def run(label, w=1, wtimeout=None, comment=None, retry=True, streams=("c",), database_stream=False):
    db = MongoClient(URL, retryWrites=retry)["insert_probe"]
    for name in ("c",) + OTHERS:
        db.drop_collection(name)
        db[name].create_index("externalId", unique=True)
    col = db["c"].with_options(write_concern=WriteConcern(w=w, wtimeout=wtimeout) if wtimeout else WriteConcern(w=w))
    stopped = threading.Event()

    def watch(target):
        with target.watch(full_document="updateLookup", max_await_time_ms=1000) as s:
            while not stopped.is_set():
                s.try_next()

    probe_db = MongoClient(URL)["insert_probe"]
    targets = [probe_db[name] for name in streams] + ([probe_db] if database_stream else [])
    threads = [threading.Thread(target=watch, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    time.sleep(0.5)
    t0 = time.time()
    for i in range(0, N, 1000):
        docs = [InsertOne({"_id": ObjectId(), "externalId": "k%06d" % n, "amount": Decimal128("%d.00" % n),
                           "currency": "EUR", "method": "m"}) for n in range(i, i + 1000)]
        if comment:
            col.bulk_write(docs, ordered=False, comment=comment)
        else:
            col.bulk_write(docs, ordered=False)
    rate = N / (time.time() - t0)
    stopped.set()
    for t in threads:
        t.join()
    print("%-44s %6.0f/s" % (label, rate), flush=True)


for _ in range(2):
    run("w:1, stream on the collection")
    run("w:majority", w="majority")
    run("w:majority, wtimeout", w="majority", wtimeout=8000)
    run("w:1, comment", comment="nocobridge/probe")
    run("w:majority, wtimeout, comment (the bridge)", w="majority", wtimeout=8000, comment="nocobridge/probe")
    run("w:1, no retryable writes", retry=False)
    run("no stream", streams=())
    run("one database stream", streams=(), database_stream=True)
    run("a stream per collection, four", streams=("c",) + OTHERS)
