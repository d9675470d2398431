"""Building blocks for SaaS REST APIs, each a module with one job and a small typed API.

========================  ====================================================================
module                    job
========================  ====================================================================
:mod:`.template_syntax`   request templates: the JSON shape of a record and of a request,
                          parsed without any schema
:mod:`.template`          a template validated against an Arrow schema and compiled to Arrow
                          operations
:mod:`.splitting`         cutting a batch's encoded records into requests that respect a
                          maximum body size in bytes and a maximum number of records
:mod:`.results`           per-record results: an HTTP answer to delivered / rejected /
                          retryable for each record of the request
:mod:`.bisection`         isolating the bad records of a whole-batch refusal that names none
:mod:`.auth_config`       the ``auth`` block, checked without httpx
:mod:`.auth`              ``httpx.Auth`` for an API-key header, HTTP Basic, a bearer token and
                          OAuth2 client credentials
:mod:`.pacing`            a rate limiter shared by threads that follows the API's rate-limit
                          response headers (``Retry-After``, ``X-RateLimit-*``)
:mod:`.presets`           ready-made destinations (``hubspot_contacts``, ``braze_users_track``)
                          as plain data a user can copy
========================  ====================================================================

The ``rest_api`` sink's delivery loop calls them; they import neither dlt nor the sink, so each
is tested on its own. Each module's docstring says how the loop is meant to call it.
"""
