//! The published contracts: JSON Schema of every event type and the OpenAPI document.

use crossdock_model::{Envelope, EventData};
use serde_json::{Value, json};

/// `GET /v1/schema`: the envelope and the `data` schema of every public event type.
pub fn event_schemas() -> Value {
    let mut types = EventData::schemas();
    types.retain(|name, _| {
        EventData::TYPES
            .iter()
            .any(|(n, public)| *public && n == name)
    });
    json!({
        "envelope": schemars::schema_for!(Envelope),
        "types": types,
    })
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

/// `GET /v1/openapi.json`.
pub fn document() -> Value {
    let bearer = json!([{"bearer": []}]);
    let outcome = json!({
        "type": "object",
        "required": ["id", "status", "ledger_seq"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["applied", "duplicate", "quarantined", "held"]},
            "ledger_seq": {"type": "integer"},
            "line": {"type": "integer", "description": "1-based line of an NDJSON batch"}
        }
    });
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "Crossdock", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Inventory and order sync hub. Errors are RFC 7807 problem+json with a stable type."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Envelope": schemars::schema_for!(Envelope),
                "EventOutcome": outcome,
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string", "description": "urn:crossdock:problem:<slug>"},
                        "title": {"type": "string"}, "status": {"type": "integer"},
                        "detail": {"type": "string"}, "field": {"type": "string"}
                    }
                },
                "ReservationRequest": {
                    "type": "object", "required": ["id", "channel", "lines", "ttl_s"],
                    "properties": {
                        "id": {"type": "string"}, "channel": {"type": "string"}, "ttl_s": {"type": "integer", "minimum": 1},
                        "lines": {"type": "array", "items": {"type": "object", "required": ["item", "qty"],
                            "properties": {"item": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}}}
                    }
                },
                "Reservation": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"}, "status": {"type": "string", "enum": ["held", "committed", "released", "expired"]},
                        "channel": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"},
                        "lines": {"type": "array", "items": {"type": "object", "properties": {
                            "item": {"type": "string"}, "location": {"type": "string"}, "lot": {"type": "string"}, "qty": {"type": "integer"}}}}
                    }
                }
            }
        },
        "paths": {
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "Readiness, with each partition's ledger sequence", "responses": {"200": {"description": "ready"}}}},
            "/v1/schema": {"get": {"summary": "JSON Schema of the envelope and every event type", "responses": {"200": {"description": "schemas"}}}},
            "/v1/events": {"post": {
                "summary": "Submit one CloudEvent or an NDJSON batch (up to 10,000 lines); answered after commit",
                "security": bearer,
                "requestBody": {"required": true, "content": {
                    "application/cloudevents+json": {"schema": {"$ref": "#/components/schemas/Envelope"}},
                    "application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}},
                    "application/x-ndjson": {"schema": {"type": "string", "description": "one envelope per line"}}
                }},
                "responses": {
                    "200": {"description": "applied or duplicate; for a batch, one NDJSON outcome per line in order",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventOutcome"}}}},
                    "202": {"description": "held by the resequencer until a missing sequence number arrives"},
                    "400": problem_response("malformed JSON"),
                    "401": problem_response("no or bad token"),
                    "403": problem_response("the token may not submit as this source"),
                    "409": problem_response("same id and source with a different payload"),
                    "413": problem_response("body or batch too large"),
                    "415": problem_response("unsupported content type"),
                    "422": problem_response("invalid envelope or data, unknown type, unknown item or location (quarantined)"),
                    "503": problem_response("overloaded or store unavailable; retry after Retry-After")
                }
            }},
            "/v1/availability": {"get": {
                "summary": "Channel availability (ATS) of one item", "security": bearer,
                "parameters": [
                    {"name": "item", "in": "query", "required": true, "schema": {"type": "string"}},
                    {"name": "channel", "in": "query", "required": true, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "{item, channel, available, ledger_seq}"},
                              "404": problem_response("unknown item or channel")}
            }},
            "/v1/availability/query": {"post": {
                "summary": "Channel availability of up to 10,000 items", "security": bearer,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object",
                    "required": ["channel", "items"], "properties": {"channel": {"type": "string"},
                    "items": {"type": "array", "maxItems": 10000, "items": {"type": "string"}}}}}}},
                "responses": {"200": {"description": "{channel, results: [{item, available, ledger_seq}]}"},
                              "413": problem_response("too many items")}
            }},
            "/v1/items/{item}/positions": {"get": {
                "summary": "Every position of an item with every bucket and available", "security": bearer,
                "parameters": [{"name": "item", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "positions and channel availability"}, "404": problem_response("unknown item")}
            }},
            "/v1/reservations": {"post": {
                "summary": "Hold stock for a channel, all lines or none", "security": bearer,
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReservationRequest"}}}},
                "responses": {
                    "201": {"description": "held (or the same answer again for a repeated request)",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Reservation"}}}},
                    "409": problem_response("insufficient-stock (with shortfall per line) or reservation-conflict"),
                    "422": problem_response("invalid request")
                }
            }},
            "/v1/reservations/{id}/release": {"post": {
                "summary": "Release a held reservation", "security": bearer,
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "released"}, "404": problem_response("unknown reservation"), "409": problem_response("not held")}
            }},
            "/v1/reservations/{id}/commit": {"post": {
                "summary": "Turn a held reservation into an allocation", "security": bearer,
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "committed"}, "404": problem_response("unknown reservation"), "409": problem_response("not held")}
            }},
            "/v1/outbox": {"get": {
                "summary": "Pending outbox messages (admin)", "security": bearer,
                "parameters": [{"name": "endpoint", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "{messages}"}}
            }},
            "/v1/endpoints": {"get": {
                "summary": "Delivery lanes: breaker, rate budget, depth by priority, oldest age, last error, counters, dead letters", "security": bearer,
                "responses": {"200": {"description": "{endpoints}"}}
            }},
            "/v1/dlq": {"get": {
                "summary": "Dead-letter queue (default: parked messages)", "security": bearer,
                "parameters": [
                    {"name": "endpoint", "in": "query", "schema": {"type": "string"}},
                    {"name": "key", "in": "query", "schema": {"type": "string"}},
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["parked", "retried", "discarded", "superseded", "all"]}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 10000}}
                ],
                "responses": {"200": {"description": "{dead_letters}"}}
            }},
            "/v1/dlq/retry": {"post": {
                "summary": "Put parked messages back in the outbox, by ids or by endpoint/key (admin; audited)", "security": bearer,
                "requestBody": {"required": true, "content": {"application/json": {"schema": dlq_action()}}},
                "responses": {"200": {"description": "{retried, dead_letters}"}, "400": problem_response("no selection or no note")}
            }},
            "/v1/dlq/discard": {"post": {
                "summary": "Discard parked messages, by ids or by endpoint/key (admin; audited)", "security": bearer,
                "requestBody": {"required": true, "content": {"application/json": {"schema": dlq_action()}}},
                "responses": {"200": {"description": "{discarded, dead_letters}"}, "400": problem_response("no selection or no note")}
            }},
            "/v1/audit": {"get": {
                "summary": "Operator actions, newest first (admin)", "security": bearer,
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 10000}}],
                "responses": {"200": {"description": "{audit}"}}
            }},
            "/v1/trace/{correlation_id}": {"get": {
                "summary": "A business document's journey, in time order: its events, the ledger and availability changes they made, workflow steps, outbox messages (waiting, delivered, coalesced into a later value, parked) and exceptions (query)", "security": bearer,
                "parameters": [
                    {"name": "correlation_id", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}
                ],
                "responses": {"200": {"description": "{correlation_id, started, last, counts, timeline}"}, "404": problem_response("nothing carries the id")}
            }},
            "/v1/webhooks/{platform}/{channel}": {"post": {
                "summary": "Inbound Shopify (orders/create, orders/cancelled, refunds/create, inventory_levels/update) and WooCommerce (order.created, order.updated) webhooks, verified by their HMAC header instead of a bearer token",
                "parameters": [
                    {"name": "platform", "in": "path", "required": true, "schema": {"type": "string", "enum": ["shopify", "woocommerce"]}},
                    {"name": "channel", "in": "path", "required": true, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "{status: allocated | oversold | released | in_sync | drift | ignored | held_for_review, duplicate?}"},
                    "401": problem_response("bad signature; nothing stored"),
                    "404": problem_response("no such webhook endpoint"),
                    "422": problem_response("malformed body or unknown item; kept as an exception")
                }
            }}
        }
    });
    for more in [
        partner_paths(&bearer),
        workflow_paths(&bearer),
        exception_paths(&bearer),
    ] {
        if let (Some(paths), Value::Object(more)) = (doc["paths"].as_object_mut(), more) {
            paths.extend(more);
        }
    }
    doc
}

/// Orders, returns, transfers and purchase orders.
fn workflow_paths(bearer: &Value) -> Value {
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let list = json!([
        {"name": "state", "in": "query", "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 1000}}
    ]);
    let body =
        json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}});
    let shown = "the workflow: {kind, id, state, ...its lines...}; a repeat answers 200 with Idempotent-Replayed";
    let mut paths = serde_json::Map::new();
    paths.insert("/v1/orders".into(), json!({
        "post": {
            "summary": "Capture an order: validate, ERP credit check (timeout + fallback), source, allocate, accept, release; answers with the promised lines (location, qty, backordered). Idempotent by id (reserve scope)",
            "security": bearer,
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["id", "channel", "lines", "ship_to"], "properties": {
                "id": {"type": "string"}, "channel": {"type": "string"},
                "lines": {"type": "array", "items": {"type": "object", "properties": {"item": {"type": "string"}, "qty": {"type": "integer"}}}},
                "ship_to": {"type": "object", "required": ["region"], "properties": {"name": {"type": "string"}, "region": {"type": "string"}, "country": {"type": "string"}, "postal_code": {"type": "string"}}},
                "amount_minor": {"type": "integer"}
            }}}}},
            "responses": {"201": {"description": shown}, "409": problem_response("insufficient stock (channel does not backorder) or the id exists with other content"), "422": problem_response("invalid order, field named; kept as an exception")}
        },
        "get": {"summary": "Orders, most recently changed first", "security": bearer, "parameters": list, "responses": {"200": {"description": "{kind, workflows: [{id, state, updated_at}]}"}}}
    }));
    paths.insert("/v1/orders/{id}".into(), json!({"get": {"summary": "An order's state and its full history: every step with its causing event, ledger sequence and correlation id", "security": bearer, "parameters": id, "responses": {"200": {"description": "{..., history}"}, "404": problem_response("no such order")}}}));
    paths.insert("/v1/orders/{id}/cancel".into(), json!({"post": {"summary": "Cancel: release what is not shipped (reserve scope)", "security": bearer, "parameters": id, "requestBody": body, "responses": {"200": {"description": shown}, "404": problem_response("no such open order")}}}));
    paths.insert("/v1/orders/{id}/approve".into(), json!({"post": {"summary": "Lift a credit hold; the order is sourced and released (admin; note required)", "security": bearer, "parameters": id, "requestBody": body, "responses": {"200": {"description": shown}}}}));
    for (path, what, fields) in [
        (
            "/v1/returns",
            "Authorize a return: {rma, order?, location, lines, reason} (admin)",
            "returns",
        ),
        (
            "/v1/transfers",
            "Request a transfer: {transfer, from, to, lines} (admin)",
            "transfers",
        ),
        (
            "/v1/purchase-orders",
            "Create a purchase order: {po, partner?, location, lines, expected_at, ack_within_s?}; opens incoming supply, sends an 850 to the partner (admin)",
            "purchase orders",
        ),
    ] {
        paths.insert(path.into(), json!({
            "post": {"summary": what, "security": bearer, "requestBody": body, "responses": {"201": {"description": shown}, "409": problem_response("exists with other content"), "422": problem_response("invalid, field named")}},
            "get": {"summary": format!("List {fields}"), "security": bearer, "parameters": list, "responses": {"200": {"description": "{kind, workflows}"}}}
        }));
        paths.insert(format!("{path}/{{id}}"), json!({"get": {"summary": format!("One of the {fields} with its history"), "security": bearer, "parameters": id, "responses": {"200": {"description": "{..., history}"}, "404": problem_response("not found")}}}));
    }
    paths.insert("/v1/purchase-orders/{id}/asn-decision".into(), json!({"post": {"summary": "Accept or reject the ASN lines that did not match the PO: {asn, accept, note} (admin)", "security": bearer, "parameters": id, "requestBody": body, "responses": {"200": {"description": shown}, "409": problem_response("no ASN waiting"), "422": problem_response("an unknown item cannot be accepted")}}}));
    Value::Object(paths)
}

fn dlq_action() -> Value {
    json!({
        "type": "object",
        "required": ["note"],
        "properties": {
            "ids": {"type": "array", "items": {"type": "integer"}},
            "endpoint": {"type": "string"},
            "key": {"type": "string"},
            "note": {"type": "string", "description": "why (audited)"},
            "limit": {"type": "integer"}
        }
    })
}

/// Trading partners, master data and exception replay.
fn partner_paths(bearer: &Value) -> Value {
    json!({
            "/v1/partners": {"get": {
                "summary": "Trading partners: interchange ids, channel, folders, version", "security": bearer,
                "responses": {"200": {"description": "{partners}"}}
            }},
            "/v1/partners/{id}/send/{set}": {"post": {
                "summary": "Render an 856 or 810 (body: a shipment) or a 940 (body: a release) for the partner and write it to its outbound folder (admin)", "security": bearer,
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "set", "in": "path", "required": true, "schema": {"type": "string", "enum": ["856", "810", "940"]}}
                ],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {"200": {"description": "{partner, set, file}"}, "400": problem_response("malformed document"), "404": problem_response("no such partner")}
            }},
            "/v1/master": {"get": {
                "summary": "Master data counts: items, locations, crosswalks, units", "security": bearer,
                "responses": {"200": {"description": "{items, locations, crosswalks, units}"}}
            }},
            "/v1/master/{kind}": {"post": {
                "summary": "Replace one master data file (CSV body); a file with a bad row changes nothing (admin)", "security": bearer,
                "parameters": [{"name": "kind", "in": "path", "required": true, "schema": {"type": "string", "enum": ["items", "locations", "crosswalks", "units"]}}],
                "requestBody": {"required": true, "content": {"text/csv": {"schema": {"type": "string"}}}},
                "responses": {"200": {"description": "{replaced, counts}"}, "422": problem_response("bad rows, each with its line")}
            }}
    })
}

/// The exceptions work queue: records, lifecycle moves, bulk moves.
fn exception_paths(bearer: &Value) -> Value {
    let text = json!({"type": "string"});
    let filter = json!({
        "type": "object",
        "description": "every given condition must hold",
        "properties": {
            "kind": {"type": "string", "description": "a kind, or several separated by commas"},
            "status": {"type": "string", "description": "a status, several separated by commas, active (open and acknowledged) or closed (resolved, replayed, discarded)"},
            "entity_prefix": text, "correlation_id": text,
            "since": {"type": "string", "format": "date-time", "description": "received at or after"},
            "until": {"type": "string", "format": "date-time", "description": "received before"}
        }
    });
    json!({
        "/v1/exceptions": {"get": {
            "summary": "Exception records, newest first, paged, with counts of what the filter matches by kind and status and open counts by kind",
            "security": bearer,
            "parameters": [
                {"name": "kind", "in": "query", "schema": text, "description": "comma-separated kinds"},
                {"name": "status", "in": "query", "schema": text, "description": "comma-separated statuses, or active, or closed"},
                {"name": "entity_prefix", "in": "query", "schema": text},
                {"name": "correlation_id", "in": "query", "schema": text},
                {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "cursor", "in": "query", "schema": text, "description": "next_cursor of the previous page"}
            ],
            "responses": {
                "200": {"description": "{exceptions: [record with actor, note, policy, replay, attempts, held_at, notified_at, corrected_at], next_cursor, matching: {total, by_kind}, open_by_kind}"},
                "400": problem_response("unknown kind or status, a time that is not RFC 3339, a cursor that was not given")
            }
        }},
        "/v1/exceptions/{id}/{action}": {"post": {
            "summary": "acknowledge (open → acknowledged), resolve or discard (open or acknowledged → resolved or discarded), or replay: run the kept input again (a partner file, a request refused at the HTTP edge, a parked delivery) (admin; audited)",
            "security": bearer,
            "parameters": [
                {"name": "id", "in": "path", "required": true, "schema": text},
                {"name": "action", "in": "path", "required": true, "schema": {"type": "string", "enum": ["acknowledge", "resolve", "discard", "replay"]}}
            ],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["note"], "properties": {"note": {"type": "string", "description": "why (audited)"}}}}}},
            "responses": {
                "200": {"description": "{exception}; for replay also {input, replayed, report}"},
                "400": problem_response("no note"),
                "404": problem_response("no such exception or action"),
                "409": problem_response("invalid-transition: the record is closed (or already acknowledged); status names it"),
                "422": problem_response("not-replayable: nothing kept to run; replay-failed: it ran and failed again; the record keeps its status, with a note saying why")
            }
        }},
        "/v1/exceptions/bulk": {"post": {
            "summary": "One move for every record a filter matches, oldest first, bounded (admin; audited per record)",
            "security": bearer,
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["action", "filter", "note"],
                "properties": {
                    "action": {"type": "string", "enum": ["acknowledge", "resolve", "discard", "replay"]},
                    "filter": filter,
                    "note": {"type": "string"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
                }
            }}}},
            "responses": {
                "200": {"description": "{action, matched, applied, skipped, more, results: [{id, outcome: applied | skipped, status, reason}]}"},
                "400": problem_response("no filter, no note, unknown action, kind or status, limit out of range")
            }
        }}
    })
}
