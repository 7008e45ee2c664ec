-- wrk script: every request POSTs a 4 KiB body (the HTTP-path benchmark's upload row).
wrk.method = "POST"
wrk.body = string.rep("x", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"
