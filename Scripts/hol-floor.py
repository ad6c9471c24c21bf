#!/usr/bin/env python3
# Raw head-of-line floor on a MongoDB-protocol server: a change stream on collection A only,
# while one updateMany of 20,000 documents runs in collection B; 50 inserts into A at 10/s.
#   python3 Scripts/hol-floor.py MONGO_URL   (pymongo; Scripts/lib.sh puts it in its venv)
import sys, time, threading, statistics
from pymongo import MongoClient
url = sys.argv[1]
c = MongoClient(url)
db = c["holprobe"]
db.drop_collection("a"); db.drop_collection("b")
db.b.insert_many([{"externalId": "k%06d" % i, "v": 0} for i in range(20000)])
db.a.create_index("externalId", unique=True); db.b.create_index("externalId", unique=True)
lat = {}
def watch():
    with db.a.watch([{"$match": {"operationType": "insert"}}]) as s:
        for ev in s:
            k = ev["fullDocument"]["externalId"]
            lat[k] = time.time() - ev["fullDocument"]["t"]
            if len(lat) >= 50: return
w = threading.Thread(target=watch); w.start(); time.sleep(1)
def bulk():
    t = time.time(); db.b.update_many({}, {"$set": {"v": 1}}); print("updateMany %.1f s" % (time.time() - t))
b = threading.Thread(target=bulk); b.start(); time.sleep(0.5)
for i in range(50):
    db.a.insert_one({"externalId": "p%d" % i, "t": time.time()}); time.sleep(0.1)
w.join(timeout=120); b.join()
v = sorted(lat.values())
print("probes %d, p50 %.1f ms, max %.1f ms" % (len(v), statistics.median(v) * 1000, v[-1] * 1000))
