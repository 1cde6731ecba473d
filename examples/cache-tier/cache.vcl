# A cache node of the tier in examples/cache-tier (run.sh) and
# tests/integration/cache_tier_test.cc: Varnish 7.1 (Debian 12) in front of one slow origin.
#
# The origin's address is the backend below; run.sh and the test write their own copy
# with the real port in place of ORIGIN_PORT. Start the node with `-i NAME`: the name
# comes back as X-Cache-Node (server.identity), so a client can see which node served it.
vcl 4.1;

backend origin {
    .host = "127.0.0.1";
    .port = "ORIGIN_PORT";
}

sub vcl_recv {
    # ringproxy's active health check (health.path) asks the cache itself, not the origin:
    # a node is up when its Varnish answers, whatever the origin does.
    if (req.url == "/health") {
        return (synth(200, "ok"));
    }
    # Every GET and HEAD is looked up, cookies and Authorization or not (the built-in
    # vcl_recv would pass those): the example is about where keys land, not about
    # what may be cached.
    if (req.method == "GET" || req.method == "HEAD") {
        return (hash);
    }
    return (pass);
}

sub vcl_hash {
    # The object is the URL alone, not URL + Host as in the built-in vcl_hash: every
    # balancer in front (two ringproxies, nginx) reaches it under its own Host, and the
    # tier must hold one object per URI whichever proxy asked.
    hash_data(req.url);
    return (lookup);
}

sub vcl_synth {
    if (resp.status == 200 && req.url == "/health") {
        set resp.http.Content-Type = "text/plain";
        set resp.body = "ok" + {"
"};
        return (deliver);
    }
}

sub vcl_backend_response {
    # Cache every answer for an hour, whatever Cache-Control the origin sent; skip the
    # built-in vcl_backend_response, which would refuse responses with Set-Cookie.
    set beresp.ttl = 1h;
    set beresp.grace = 0s;
    return (deliver);
}

sub vcl_deliver {
    # obj.hits counts the lookups that found this object: 0 on the request that fetched it.
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
    set resp.http.X-Cache-Node = server.identity;
}
