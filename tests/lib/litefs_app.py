#!/usr/bin/env python3
"""deploy/demo-app/app.py for the LiteFS stand-in (tests/lib/litefs_standin.py).

Same app, same flags. After each successful insert it calls the local
stand-in's POST /commit?db=<basename of --db> (URL in $LITEFS_COMMIT_URL)
before it answers, so the stand-in's <db>-pos file is updated inside the
request as real LiteFS updates it inside the commit. Without
$LITEFS_COMMIT_URL it is exactly the demo app.
"""
import importlib.util
import os
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.environ.get("LEASEWAY_DEMO_APP") or os.path.join(HERE, "..", "..", "deploy", "demo-app", "app.py")

spec = importlib.util.spec_from_file_location("demo_app", APP)
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)

URL = os.environ.get("LITEFS_COMMIT_URL")
if URL:
    _insert = app.Store.insert

    def insert(self, *a, **kw):
        ok = _insert(self, *a, **kw)
        if ok:
            try:
                urllib.request.urlopen(urllib.request.Request(URL, data=b"", method="POST"), timeout=5).read()
            except OSError as e:
                sys.stderr.write("litefs_app: commit hook failed: %r\n" % (e,))
        return ok

    app.Store.insert = insert

if __name__ == "__main__":
    app.main()
