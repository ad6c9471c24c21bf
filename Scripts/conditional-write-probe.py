#!/usr/bin/env python3
# What a conditional update costs on a MongoDB-protocol server: 4,000 updates in bulks of
# 1,000, by `_id` alone and by `_id` plus the fields the bridge's writes hold on to (its
# `expected` filter, bare and as the bridge sends it), with and without a change stream (`updateLookup`) open on the
# collection, as the bridge's own stream is; the bridge's write also with `w: "majority"`.
#   python3 Scripts/conditional-write-probe.py MONGO_URL   (pymongo; Scripts/lib.sh puts it in its venv)
import sys, time, threading
from pymongo import MongoClient, UpdateOne, WriteConcern
from bson import ObjectId
db = MongoClient(sys.argv[1])["conditional_write_probe"]
N = 4000
SET = {"$set": {"v": 1, "status": "done"}}

def setup():
    db.drop_collection("c")
    col = db["c"]
    col.create_index("externalId", unique=True)
    docs = [{"_id": ObjectId(), "externalId": "k%06d" % i, "action": "a", "table_no": i, "note": "x" * 20,
             "amount": 1.5, "status": "new", "v": 0} for i in range(N)]
    col.insert_many(docs)
    return col, docs

def expected(d):
    return {"_id": d["_id"], "externalId": d["externalId"], "action": d["action"], "table_no": d["table_no"],
            "note": d["note"], "amount": d["amount"], "status": d["status"], "v": d["v"], "missing": None}

def negated(d):
    # The same condition as expected(d), as the bridge sends it: `_id` bare and first, every
    # other field {$not: {$ne: v}}, which this server matches without walking its index
    # catalog per field (RecordSynchronizer.condition).
    e = expected(d)
    return {k: (v if k == "_id" else {"$not": {"$ne": v}}) for k, v in e.items()}

def run(label, make, stream, w=1):
    col, docs = setup()
    col = col.with_options(write_concern=WriteConcern(w=w))
    stopped = threading.Event()
    def watch():
        with col.watch(full_document="updateLookup") as s:
            while not stopped.is_set():
                s.try_next()
    watcher = threading.Thread(target=watch)
    if stream:
        watcher.start(); time.sleep(0.5)
    t0 = time.time()
    for i in range(0, N, 1000):
        col.bulk_write([make(d) for d in docs[i:i + 1000]], ordered=False)
    rate = N / (time.time() - t0)
    stopped.set()
    if stream:
        watcher.join()
    print("%-44s stream %-5s w %-8s %6.0f/s" % (label, "open" if stream else "none", w, rate), flush=True)

for stream in (False, True):
    run("upsert by externalId (a plain relay)", lambda d: UpdateOne({"externalId": d["externalId"]}, SET, upsert=True), stream)
    run("update by _id", lambda d: UpdateOne({"_id": d["_id"]}, SET), stream)
    run("update by _id + 8 expected fields, bare", lambda d: UpdateOne(expected(d), SET), stream)
    run("the same, majority write concern", lambda d: UpdateOne(expected(d), SET), stream, w="majority")
    run("update by _id + 8 fields as $not/$ne (bridge)", lambda d: UpdateOne(negated(d), SET), stream)
    run("the same, majority write concern", lambda d: UpdateOne(negated(d), SET), stream, w="majority")
