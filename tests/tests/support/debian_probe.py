import json, sys, time, urllib.request, urllib.error
for _ in range(300):
    try:
        if urllib.request.urlopen("http://127.0.0.1:8080/", timeout=2).status == 200: break
    except Exception: time.sleep(0.05)
for method, path, body in json.loads(sys.argv[1]):
    req = urllib.request.Request("http://127.0.0.1:8080" + path, data=body.encode() if body else None, method=method)
    try:
        r = urllib.request.urlopen(req, timeout=10); code, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        code, text = e.code, e.read()
    print(json.dumps([code, text.decode()]))
