//! The published contracts: JSON Schema of every event type and the OpenAPI 3.1 document.
//!
//! The document lists every route the API's router serves (the dashboard's `/ui` pages aside),
//! each with the answers it gives: its success bodies and every error, as problem+json. The
//! errors every operation of a kind may give are added here once (a bearer token: 401 and 403;
//! a body: 408, 413 and 503 from the body budget; parameters: 400), the others per operation.
//! Schemas generated from the model's types are generated with their definitions under
//! `components/schemas`, so every `$ref` resolves within the document. Tests check it against the router's routes
//! both ways; `crates/cli/tests/contract.rs` validates it with an independent validator and
//! runs property-based tests generated from it against the binary.

use crossdock_model::event::{
    OrderLine, PurchaseOrderCreated, ReturnAuthorized, ShipTo, TransferRequested,
};
use crossdock_model::{Envelope, EventData, ExceptionRecord};
use serde_json::{Map, Value, json};

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

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn problem(description: &str) -> Value {
    let mut r = json!({
        "description": description,
        "content": {"application/problem+json": {"schema": schema_ref("Problem")}}
    });
    if description.starts_with("overloaded") || description.contains("Retry-After") {
        r["headers"] = json!({"Retry-After": {
            "description": "seconds to wait before trying again",
            "schema": {"type": "integer", "minimum": 0}
        }});
    }
    r
}

fn json_answer(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn nullable(ty: &str) -> Value {
    json!({"type": [ty, "null"]})
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn array_of(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

/// Who may call an operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    /// A bearer token with the scope the summary names.
    Bearer,
    /// A platform's HMAC signature header.
    Signature,
}

/// One operation and its answers.
struct Op {
    summary: String,
    auth: Auth,
    params: Vec<Value>,
    body: Option<Value>,
    answers: Map<String, Value>,
    /// Whether the engine or the store answers it (503 when they cannot).
    engine: bool,
}

fn op(summary: impl Into<String>, auth: Auth) -> Op {
    Op {
        summary: summary.into(),
        auth,
        params: Vec::new(),
        body: None,
        answers: Map::new(),
        engine: auth != Auth::None,
    }
}

impl Op {
    fn path(mut self, name: &str, schema: Value) -> Op {
        self.params
            .push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        self
    }

    fn query(mut self, name: &str, required: bool, schema: Value) -> Op {
        self.params
            .push(json!({"name": name, "in": "query", "required": required, "schema": schema}));
        self
    }

    fn body(mut self, required: bool, content: Value) -> Op {
        self.body = Some(json!({"required": required, "content": content}));
        self
    }

    fn json_body(self, schema: Value) -> Op {
        self.body(true, json!({"application/json": {"schema": schema}}))
    }

    fn ok(mut self, code: u16, answer: Value) -> Op {
        self.answers.insert(code.to_string(), answer);
        self
    }

    fn err(mut self, code: u16, description: &str) -> Op {
        self.answers.insert(code.to_string(), problem(description));
        self
    }

    fn no_engine(mut self) -> Op {
        self.engine = false;
        self
    }

    /// The operation object, with the errors every operation of its kind may give added where
    /// the operation does not describe them itself.
    fn build(mut self) -> Value {
        let mut common: Vec<(u16, &str)> = Vec::new();
        match self.auth {
            Auth::Bearer => {
                common.push((401, "no bearer token, or one that is not valid"));
                common.push((403, "the token lacks the scope this operation needs"));
            }
            Auth::Signature => common.push((401, "the signature header does not match the body")),
            Auth::None => {}
        }
        if self.params.iter().any(|p| p["in"] == "query") {
            common.push((
                400,
                "a query parameter is missing or does not parse; field names it",
            ));
        }
        if self.params.iter().any(|p| p["in"] == "path") {
            common.push((400, "a path parameter does not decode or is not a valid id"));
        }
        if self.body.is_some() {
            common.push((
                408,
                "the body did not arrive within [server] body_read_timeout_s",
            ));
            common.push((
                413,
                "the body exceeds the request's limit ([server] body_max_bytes)",
            ));
            common.push((
                503,
                "overloaded: the body budget is spent or the engine's queue is full; nothing was \
                 kept, retry after Retry-After",
            ));
        }
        if self.engine {
            common.push((
                503,
                "overloaded, or the store could not answer; retry after Retry-After",
            ));
        }
        for (code, description) in common {
            self.answers
                .entry(code.to_string())
                .or_insert_with(|| problem(description));
        }
        let mut o = json!({"summary": self.summary, "responses": self.answers});
        o["security"] = match self.auth {
            Auth::Bearer => json!([{"bearer": []}]),
            Auth::None | Auth::Signature => json!([]),
        };
        if !self.params.is_empty() {
            o["parameters"] = Value::Array(self.params);
        }
        if let Some(b) = self.body {
            o["requestBody"] = b;
        }
        o
    }
}

/// `GET /v1/openapi.json`.
pub fn document() -> Value {
    // The model's types (the envelope, exception records, the bodies the workflow handlers
    // take) with every definition they use under `components/schemas`, where their references
    // point.
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut generator = settings.into_generator();
    generator.subschema_for::<Envelope>();
    generator.subschema_for::<ExceptionRecord>();
    generator.subschema_for::<OrderLine>();
    generator.subschema_for::<ShipTo>();
    generator.subschema_for::<ReturnAuthorized>();
    generator.subschema_for::<TransferRequested>();
    generator.subschema_for::<PurchaseOrderCreated>();
    let mut schemas = generator.take_definitions(true);
    for (name, schema) in shapes() {
        schemas.insert(name.into(), schema);
    }
    let mut paths: Map<String, Value> = Map::new();
    for (path, method, operation) in operations() {
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[method] = operation.build();
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Crossdock",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Inventory and order sync hub. Every 4xx and 5xx is an RFC 7807 \
                problem (application/problem+json) with a stable type and a numeric status. \
                Request bodies share one budget: past it the hub answers 503 with Retry-After \
                before reading a body."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "paths": paths,
    })
}

/// The shapes of the answers (and of a few bodies), by name.
fn shapes() -> Vec<(&'static str, Value)> {
    let seq = json!({"type": "integer", "minimum": 0});
    let time = json!({"type": "string", "format": "date-time"});
    let qty = json!({"type": "integer"});
    vec![
        (
            "Problem",
            json!({
                "type": "object",
                "description": "RFC 7807 problem details; other members add what the problem is about",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string", "pattern": "^urn:crossdock:problem:[a-z0-9-]+$"},
                    "title": {"type": "string"},
                    "status": {"type": "integer", "minimum": 400, "maximum": 599},
                    "detail": {"type": "string"},
                    "field": {"type": "string", "description": "the input field at fault"}
                }
            }),
        ),
        (
            "EventOutcome",
            object(
                &["id", "status", "ledger_seq"],
                json!({
                    "id": {"type": "string"},
                    "status": {"type": "string", "enum": ["applied", "duplicate", "held", "forwarding"]},
                    "original_status": {"type": "string", "enum": ["applied", "quarantined", "held", "forwarding"]},
                    "ledger_seq": seq,
                }),
            ),
        ),
        (
            "Reservation",
            object(
                &["id", "status", "channel", "lines", "expires_at"],
                json!({
                    "id": {"type": "string"},
                    "status": {"type": "string", "enum": ["held", "committed", "released", "expired", "preparing", "aborted"]},
                    "channel": {"type": "string"},
                    "expires_at": time,
                    "lines": array_of(object(&["item", "location", "qty"], json!({
                        "item": {"type": "string"}, "location": {"type": "string"},
                        "lot": {"type": "string"}, "qty": qty,
                    }))),
                }),
            ),
        ),
        (
            "ReservationRequest",
            object(
                &["id", "channel", "lines", "ttl_s"],
                json!({
                    "id": {"type": "string"}, "channel": {"type": "string"},
                    "ttl_s": {"type": "integer", "minimum": 1},
                    "lines": array_of(object(&["item", "qty"], json!({
                        "item": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}
                    }))),
                }),
            ),
        ),
        (
            "Workflow",
            object(
                &[
                    "kind",
                    "id",
                    "state",
                    "correlation_id",
                    "created_at",
                    "updated_at",
                ],
                json!({
                    "kind": {"type": "string", "enum": ["order", "return", "transfer", "purchase_order"]},
                    "id": {"type": "string"}, "state": {"type": "string"},
                    "correlation_id": {"type": "string"},
                    "created_at": time, "updated_at": time,
                    "history": array_of(object(&["n", "to", "at", "cause"], json!({
                        "n": {"type": "integer"}, "from": nullable("string"), "to": {"type": "string"},
                        "at": time, "ledger_seq": seq, "cause": {"type": "string"},
                        "correlation_id": {"type": "string"}, "note": {"type": "string"},
                    }))),
                }),
            ),
        ),
        (
            "WorkflowList",
            object(
                &["kind", "workflows"],
                json!({
                    "kind": {"type": "string"},
                    "workflows": array_of(object(&["id", "state", "updated_at"], json!({
                        "id": {"type": "string"}, "state": {"type": "string"}, "updated_at": time,
                    }))),
                }),
            ),
        ),
        (
            "ItemPositions",
            object(
                &["item", "ledger_seq", "positions", "channels"],
                json!({
                    "item": {"type": "string"},
                    "ledger_seq": nullable("integer"),
                    "item_seq": {"type": "integer"},
                    "oversell_hold": nullable("string"),
                    "positions": array_of(object(
                        &["location", "lot", "on_hand", "available"],
                        json!({
                            "location": {"type": "string"}, "lot": nullable("string"),
                            "on_hand": qty, "quarantined": qty, "damaged": qty,
                            "returns_pending": qty, "picked": qty, "allocated": qty,
                            "reserved": qty, "in_transit": qty, "incoming": qty,
                            "safety_stock": qty, "committed": qty, "unsellable": qty,
                            "available": qty,
                        }),
                    )),
                    "channels": array_of(object(&["channel", "available", "ledger_seq"], json!({
                        "channel": {"type": "string"}, "available": qty, "ledger_seq": nullable("integer"),
                    }))),
                }),
            ),
        ),
        (
            "Run",
            object(
                &[
                    "id",
                    "source",
                    "kind",
                    "started_by",
                    "as_of",
                    "started_at",
                    "finished_at",
                    "status",
                    "rows",
                    "counts",
                    "digest",
                ],
                json!({
                    "id": {"type": "string"}, "source": {"type": "string"}, "kind": {"type": "string"},
                    "started_by": {"type": "string"}, "as_of": time, "started_at": time,
                    "finished_at": time, "status": {"type": "string"}, "rows": {"type": "integer"},
                    "counts": {"type": ["object", "null"], "additionalProperties": {"type": "integer"}},
                    "digest": {"type": "string"}, "error": nullable("string"),
                    "variance_rows": {"type": "integer"},
                    "variances": array_of(schema_ref("Variance")),
                    "next_after": {"type": "integer"},
                }),
            ),
        ),
        (
            "Variance",
            object(
                &["n", "item", "location", "class", "delta", "action"],
                json!({
                    "n": {"type": "integer"}, "item": {"type": "string"},
                    "location": {"type": "string"}, "lot": nullable("string"),
                    "class": {"type": "string"}, "source_qty": nullable("integer"),
                    "ledger_qty": nullable("integer"), "delta": qty, "detail": {"type": "string"},
                    "action": {"type": "string"}, "reference": nullable("string"),
                }),
            ),
        ),
        (
            "DeadLetter",
            object(
                &[
                    "id",
                    "endpoint",
                    "key",
                    "status",
                    "reason",
                    "attempts",
                    "parked_at",
                ],
                json!({
                    "id": {"type": "integer"}, "endpoint": {"type": "string"}, "key": {"type": "string"},
                    "kind": {"type": "string"}, "ledger_seq": seq, "priority": {"type": "integer"},
                    "payload": {}, "correlation_id": nullable("string"),
                    "status": {"type": "string", "enum": ["parked", "retried", "discarded", "superseded"]},
                    "reason": {"type": "string"}, "attempts": {"type": "integer"},
                    "parked_at": time, "updated_at": time,
                }),
            ),
        ),
        (
            "DlqAction",
            json!({
                "type": "object",
                "required": ["note"],
                "properties": {
                    "ids": array_of(json!({"type": "integer"})),
                    "endpoint": {"type": "string"},
                    "key": {"type": "string"},
                    "note": string("why (audited)"),
                    "limit": {"type": "integer", "minimum": 0}
                },
                "additionalProperties": false
            }),
        ),
        (
            "ExceptionView",
            json!({
                "description": "an exception record with its place in the work queue",
                "allOf": [schema_ref("ExceptionRecord")],
                "type": "object",
                "required": ["policy", "attempts"],
                "properties": {
                    "actor": nullable("string"), "note": nullable("string"),
                    "policy": {"type": "string"}, "replay": nullable("string"),
                    "attempts": {"type": "integer"}
                }
            }),
        ),
        (
            "Note",
            json!({
                "type": "object", "required": ["note"],
                "properties": {"note": string("why (audited)")},
                "additionalProperties": false
            }),
        ),
    ]
}

/// A received event, as the examples show it.
fn event_example() -> Value {
    json!({
        "specversion": "1.0", "id": "rcv-1", "source": "wms-east", "type": "inventory.received.v1",
        "time": "2026-11-23T10:00:00Z",
        "data": {"item": "SKU-1", "location": "DC-EAST", "qty": 100}
    })
}

/// Every route of [`crate::api::router`] but the dashboard's, with its operation.
fn operations() -> Vec<(String, &'static str, Op)> {
    let mut ops: Vec<(String, &'static str, Op)> = Vec::new();
    let any_object = json!({"type": "object"});
    let id_param = json!({"type": "string", "minLength": 1});
    let limit = |max: u32| json!({"type": "integer", "minimum": 0, "maximum": max});
    let time = json!({"type": "string", "format": "date-time"});

    // Health, contracts, metrics.
    ops.push((
        "/healthz".into(),
        "get",
        op("Liveness", Auth::None).ok(
            200,
            json_answer(
                "alive",
                object(&["status"], json!({"status": {"const": "ok"}})),
            ),
        ),
    ));
    ops.push((
        "/readyz".into(),
        "get",
        op(
            "Readiness, with each partition's ledger sequence",
            Auth::None,
        )
        .ok(
            200,
            json_answer(
                "ready",
                object(
                    &["status", "ledger_seq"],
                    json!({
                        "status": {"const": "ready"},
                        "ledger_seq": array_of(json!({"type": "integer", "minimum": 0})),
                    }),
                ),
            ),
        ),
    ));
    ops.push((
        "/metrics".into(),
        "get",
        op(
            "The telemetry contract (docs/telemetry.md): OpenMetrics, or the Prometheus text format 0.0.4 when Accept prefers text/plain (query)",
            Auth::Bearer,
        )
        .ok(200, json!({
            "description": "every metric, each with HELP",
            "content": {
                "application/openmetrics-text": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}}
            }
        })),
    ));
    ops.push((
        "/v1/schema".into(),
        "get",
        op(
            "JSON Schema of the envelope and of every public event type",
            Auth::None,
        )
        .ok(
            200,
            json_answer(
                "schemas",
                object(
                    &["envelope", "types"],
                    json!({
                        "envelope": {"type": "object"}, "types": {"type": "object"}
                    }),
                ),
            ),
        )
        .no_engine(),
    ));
    ops.push((
        "/v1/openapi.json".into(),
        "get",
        op("This document", Auth::None)
            .ok(
                200,
                json_answer(
                    "the OpenAPI document",
                    object(&["openapi", "paths"], json!({})),
                ),
            )
            .no_engine(),
    ));

    // Events and availability.
    ops.push((
        "/v1/events".into(),
        "post",
        op(
            "Submit one CloudEvent, or an NDJSON batch (up to [server] batch_lines_max lines); answered after commit (ingest:<source>)",
            Auth::Bearer,
        )
        .body(true, json!({
            "application/cloudevents+json": {"schema": schema_ref("Envelope"), "example": event_example()},
            "application/json": {"schema": schema_ref("Envelope"), "example": event_example()},
            "application/x-ndjson": {"schema": {"type": "string", "description": "one envelope per line"}}
        }))
        .ok(200, json!({
            "description": "applied or a repeat; for a batch one answer per line, in order: {line, id, status: applied | duplicate | held | quarantined | rejected | error, ledger_seq, problem}",
            "content": {
                "application/json": {"schema": schema_ref("EventOutcome")},
                "application/x-ndjson": {"schema": {"type": "string"}}
            }
        }))
        .ok(202, json_answer("held by the resequencer until a missing sequence number arrives", schema_ref("EventOutcome")))
        .err(400, "the body is not JSON")
        .err(403, "the token may not submit events as this source")
        .err(409, "the same id and source were recorded with another payload")
        .err(413, "the body exceeds [server] body_max_bytes or the batch has too many lines")
        .err(415, "a content type other than JSON, CloudEvents JSON or NDJSON")
        .err(422, "an invalid envelope or data, an unknown type, a hub command, an empty batch, or quarantined (unknown item or location, ownership): event_status says so"),
    ));
    ops.push((
        "/v1/availability".into(),
        "get",
        op("A channel's availability (ATS) of one item (query)", Auth::Bearer)
            .query("item", true, json!({"type": "string"}))
            .query("channel", true, json!({"type": "string"}))
            .ok(200, json_answer("the item's ATS on the channel", object(&["item", "channel", "available", "ledger_seq"], json!({
                "item": {"type": "string"}, "channel": {"type": "string"},
                "available": {"type": "integer"}, "ledger_seq": json!({"type": ["integer", "null"]}),
            }))))
            .err(404, "unknown item or channel"),
    ));
    ops.push((
        "/v1/availability/query".into(),
        "post",
        op("A channel's availability of up to 10,000 items (query)", Auth::Bearer)
            .json_body(json!({
                "type": "object", "required": ["channel", "items"], "additionalProperties": false,
                "properties": {"channel": {"type": "string"}, "items": {"type": "array", "maxItems": 10000, "items": {"type": "string"}}}
            }))
            .ok(200, json_answer("one result per item, a problem for an item that is not known", object(&["channel", "results"], json!({
                "channel": {"type": "string"},
                "results": array_of(object(&["item"], json!({
                    "item": {"type": "string"}, "available": {"type": "integer"},
                    "ledger_seq": json!({"type": ["integer", "null"]}), "problem": schema_ref("Problem"),
                }))),
            }))))
            .err(400, "the body is not JSON, or the channel is not a valid id")
            .err(404, "unknown channel")
            .err(413, "more than 10,000 items, or the body exceeds [server] body_max_bytes")
            .err(422, "the body is not {channel, items}"),
    ));
    ops.push((
        "/v1/items/{item}/positions".into(),
        "get",
        op("Every position of an item with every bucket and available, and each channel's ATS (query)", Auth::Bearer)
            .path("item", id_param.clone())
            .ok(200, json_answer("the item now", schema_ref("ItemPositions")))
            .err(404, "unknown item")
            .no_engine(),
    ));
    ops.push((
        "/v1/items/{item}/history".into(),
        "get",
        op("An item as the hub knew it at a time: positions, each channel's ATS and what was delivered (query)", Auth::Bearer)
            .path("item", id_param.clone())
            .query("at", true, time.clone())
            .ok(200, json_answer("the item at `at`", object(&["item", "at", "positions", "channels"], json!({
                "item": {"type": "string"}, "at": time,
                "positions": array_of(json!({"type": "object"})),
                "channels": array_of(json!({"type": "object"})),
            }))))
            .err(404, "unknown item"),
    ));

    // Reservations.
    ops.push((
        "/v1/reservations".into(),
        "post",
        op("Hold stock for a channel, all lines or none; a repeat gets the same answer (reserve)", Auth::Bearer)
            .body(true, json!({"application/json": {
                "schema": schema_ref("ReservationRequest"),
                "example": {"id": "cart-1", "channel": "shopify", "lines": [{"item": "SKU-1", "qty": 2}], "ttl_s": 900}
            }}))
            .ok(201, json_answer("held (a repeat says Idempotent-Replayed)", schema_ref("Reservation")))
            .err(400, "the body is not JSON")
            .err(409, "insufficient-stock (with the shortfall per line), or the id exists with other lines")
            .err(422, "invalid request (field named), or an unknown item or channel (kept as an exception)"),
    ));
    for (path, what) in [
        (
            "/v1/reservations/{id}/release",
            "Release a held reservation (reserve)",
        ),
        (
            "/v1/reservations/{id}/commit",
            "Turn a held reservation into an allocation (reserve)",
        ),
    ] {
        ops.push((
            path.into(),
            "post",
            op(what, Auth::Bearer)
                .path("id", id_param.clone())
                .ok(
                    200,
                    json_answer("the reservation now", schema_ref("Reservation")),
                )
                .err(404, "unknown reservation")
                .err(409, "the reservation is not held")
                .err(422, "the command is not valid for this reservation"),
        ));
    }

    // Workflows.
    let list_params = |o: Op| {
        o.query("state", false, json!({"type": "string"}))
            .query("limit", false, limit(u32::MAX))
    };
    let shown = "the workflow with its lines; a repeat answers 200 with Idempotent-Replayed";
    ops.push((
        "/v1/orders".into(),
        "post",
        op("Capture an order: validate, ERP credit check (timeout and fallback), source, allocate, accept, release (reserve)", Auth::Bearer)
            .body(true, json!({"application/json": {
                "example": {"id": "SO-1001", "channel": "b2b", "lines": [{"item": "SKU-2", "qty": 1}], "ship_to": {"region": "east"}, "amount_minor": 12000},
                "schema": {
                "type": "object", "required": ["id", "channel", "lines", "ship_to"], "additionalProperties": false,
                "properties": {
                    "id": {"type": "string"}, "channel": {"type": "string"},
                    "lines": array_of(schema_ref("OrderLine")),
                    "ship_to": schema_ref("ShipTo"),
                    "amount_minor": {"type": "integer"}
                }
            }}}))
            .ok(201, json_answer(shown, schema_ref("Workflow")))
            .ok(200, json_answer(shown, schema_ref("Workflow")))
            .err(400, "the body is not JSON")
            .err(409, "insufficient stock where the channel does not backorder, or the id exists with other content")
            .err(422, "an invalid order (field named) or an unknown item or channel; kept as an exception"),
    ));
    for (path, kind, start) in [
        ("/v1/orders", "orders", None),
        (
            "/v1/returns",
            "returns",
            Some(("Authorize a return (admin)", "ReturnAuthorized")),
        ),
        (
            "/v1/transfers",
            "transfers",
            Some(("Request a transfer (admin)", "TransferRequested")),
        ),
        (
            "/v1/purchase-orders",
            "purchase orders",
            Some((
                "Create a purchase order; opens incoming supply and sends an 850 to the partner (admin)",
                "PurchaseOrderCreated",
            )),
        ),
    ] {
        ops.push((
            path.into(),
            "get",
            list_params(op(
                format!("List {kind}, most recently changed first (query)"),
                Auth::Bearer,
            ))
            .ok(200, json_answer("the list", schema_ref("WorkflowList"))),
        ));
        ops.push((
            format!("{path}/{{id}}"),
            "get",
            op(format!("One of the {kind} with its history: every step with its causing event, ledger sequence and correlation id (query)"), Auth::Bearer)
                .path("id", id_param.clone())
                .ok(200, json_answer("the workflow and its history", schema_ref("Workflow")))
                .err(404, "no such workflow"),
        ));
        if let Some((summary, body)) = start {
            ops.push((
                path.into(),
                "post",
                op(summary, Auth::Bearer)
                    .json_body(schema_ref(body))
                    .ok(201, json_answer(shown, schema_ref("Workflow")))
                    .ok(200, json_answer(shown, schema_ref("Workflow")))
                    .err(400, "the body is not JSON")
                    .err(404, "a workflow it names does not exist")
                    .err(
                        409,
                        "exists with other content, or not in a state that allows it",
                    )
                    .err(422, "invalid, field named; kept as an exception"),
            ));
        }
    }
    let reason = json!({"type": "object", "additionalProperties": false, "properties": {"reason": {"type": "string"}, "note": {"type": "string"}}});
    for (path, what, needs_note) in [
        (
            "/v1/orders/{id}/cancel",
            "Cancel an order: release what is not shipped (reserve)",
            false,
        ),
        (
            "/v1/orders/{id}/approve",
            "Lift a credit hold; the order is sourced and released (admin; a note is required)",
            true,
        ),
    ] {
        let o = op(what, Auth::Bearer)
            .path("id", id_param.clone())
            .body(
                needs_note,
                json!({"application/json": {"schema": reason.clone()}}),
            )
            .ok(200, json_answer(shown, schema_ref("Workflow")))
            .err(400, "the body is not JSON, or no note")
            .err(404, "no such open order")
            .err(409, "the order is not in a state that allows it")
            .err(422, "an invalid command, field named");
        ops.push((path.into(), "post", o));
    }
    ops.push((
        "/v1/purchase-orders/{id}/asn-decision".into(),
        "post",
        op("Accept or reject the ASN lines that did not match the PO (admin)", Auth::Bearer)
            .path("id", id_param.clone())
            .json_body(json!({
                "type": "object", "required": ["asn", "accept", "note"], "additionalProperties": false,
                "properties": {"asn": {"type": "string"}, "accept": {"type": "boolean"}, "note": {"type": "string"}}
            }))
            .ok(200, json_answer(shown, schema_ref("Workflow")))
            .err(400, "the body is not JSON, or no note")
            .err(404, "no such purchase order")
            .err(409, "no ASN waiting for a decision")
            .err(422, "invalid, field named; an unknown item cannot be accepted"),
    ));

    // Exceptions.
    let text = json!({"type": "string"});
    ops.push((
        "/v1/exceptions".into(),
        "get",
        op("Exception records, newest first, paged, with counts of what the filter matches by kind and status and open counts by kind (query)", Auth::Bearer)
            .query("kind", false, text.clone())
            .query("status", false, text.clone())
            .query("entity_prefix", false, text.clone())
            .query("correlation_id", false, text.clone())
            .query("since", false, time.clone())
            .query("until", false, time.clone())
            .query("limit", false, limit(u32::MAX))
            .query("cursor", false, text.clone())
            .ok(200, json_answer("a page", object(&["exceptions", "next_cursor", "matching", "open_by_kind"], json!({
                "exceptions": array_of(schema_ref("ExceptionView")),
                "next_cursor": nullable("string"),
                "matching": object(&["total", "by_kind"], json!({"total": {"type": "integer"}, "by_kind": {"type": "object"}})),
                "open_by_kind": {"type": "object", "additionalProperties": {"type": "integer"}},
            }))))
            .err(400, "an unknown kind or status, a time that is not RFC 3339, a cursor that was not given"),
    ));
    ops.push((
        "/v1/exceptions/{id}/{action}".into(),
        "post",
        op("acknowledge (open → acknowledged), resolve or discard (open or acknowledged → resolved or discarded), or replay: run the kept input again (admin; audited)", Auth::Bearer)
            .path("id", id_param.clone())
            .path("action", json!({"type": "string", "enum": ["acknowledge", "resolve", "discard", "replay"]}))
            .json_body(schema_ref("Note"))
            .ok(200, json_answer("the record; for replay also {input, replayed, report}", object(&["exception"], json!({"exception": schema_ref("ExceptionView")}))))
            .err(400, "no note, or the body is not {note}")
            .err(404, "no such exception or action")
            .err(409, "invalid-transition: the record is closed (or already acknowledged); record_status names it")
            .err(422, "not-replayable: nothing kept to run; replay-failed: it ran and failed again"),
    ));
    ops.push((
        "/v1/exceptions/bulk".into(),
        "post",
        op("One move for every record a filter matches, oldest first, bounded (admin; audited per record)", Auth::Bearer)
            .json_body(json!({
                "type": "object", "required": ["action", "filter", "note"], "additionalProperties": false,
                "properties": {
                    "action": {"type": "string", "enum": ["acknowledge", "resolve", "discard", "replay"]},
                    "filter": {
                        "type": "object", "additionalProperties": false,
                        "description": "every given condition must hold",
                        "properties": {
                            "kind": text, "status": text, "entity_prefix": text, "correlation_id": text,
                            "since": time, "until": time
                        }
                    },
                    "note": {"type": "string"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 1000}
                }
            }))
            .ok(200, json_answer("what was done", object(&["action", "matched", "applied", "skipped", "more", "results"], json!({
                "action": {"type": "string"}, "matched": {"type": "integer"}, "applied": {"type": "integer"},
                "skipped": {"type": "integer"}, "more": {"type": "boolean"},
                "results": array_of(json!({"type": "object"})),
            }))))
            .err(400, "no filter, no note, an unknown action, kind or status, a limit out of range, or the body is not JSON"),
    ));

    // Delivery.
    ops.push((
        "/v1/outbox".into(),
        "get",
        op("Pending outbox messages (admin)", Auth::Bearer)
            .query("endpoint", false, json!({"type": "string"}))
            .query("limit", false, limit(u32::MAX))
            .ok(
                200,
                json_answer(
                    "{messages}",
                    object(
                        &["messages"],
                        json!({"messages": array_of(json!({"type": "object"}))}),
                    ),
                ),
            ),
    ));
    ops.push((
        "/v1/endpoints".into(),
        "get",
        op("Delivery lanes: breaker, rate budget, depth by priority, oldest age, last error, counters, dead letters (query)", Auth::Bearer)
            .ok(200, json_answer("{endpoints}", object(&["endpoints"], json!({
                "endpoints": array_of(object(&["endpoint", "dead_letters"], json!({"endpoint": {"type": "string"}, "dead_letters": {"type": "integer"}}))),
            })))),
    ));
    ops.push((
        "/v1/dlq".into(),
        "get",
        op("The dead-letter queue (default: parked messages) (query)", Auth::Bearer)
            .query("endpoint", false, json!({"type": "string"}))
            .query("key", false, json!({"type": "string"}))
            .query("status", false, json!({"type": "string", "enum": ["parked", "retried", "discarded", "superseded", "all"]}))
            .query("limit", false, limit(u32::MAX))
            .ok(200, json_answer("{dead_letters}", object(&["dead_letters"], json!({"dead_letters": array_of(schema_ref("DeadLetter"))})))),
    ));
    for (path, verb) in [
        ("/v1/dlq/retry", "retried"),
        ("/v1/dlq/discard", "discarded"),
    ] {
        let what = if verb == "retried" {
            "Put parked messages back in the outbox, by ids or by endpoint and/or key (admin; audited)"
        } else {
            "Discard parked messages, by ids or by endpoint and/or key (admin; audited)"
        };
        ops.push((
            path.into(),
            "post",
            op(what, Auth::Bearer)
                .json_body(schema_ref("DlqAction"))
                .ok(200, json_answer("the messages acted on", object(&[verb, "dead_letters"], json!({
                    verb: {"type": "integer"}, "dead_letters": array_of(schema_ref("DeadLetter")),
                }))))
                .err(400, "no selection, no note, or the body is not {ids | endpoint | key, note}")
                .err(404, "no such endpoint"),
        ));
    }
    ops.push((
        "/v1/audit".into(),
        "get",
        op("Operator actions, newest first (admin)", Auth::Bearer)
            .query("limit", false, limit(u32::MAX))
            .ok(200, json_answer("{audit}", object(&["audit"], json!({"audit": array_of(object(&["id", "at", "actor", "action"], json!({
                "id": {"type": "integer"}, "at": time, "actor": {"type": "string"}, "action": {"type": "string"},
                "subject": {"type": "string"}, "note": {"type": "string"}, "detail": {},
            })))}))))
    ));
    ops.push((
        "/v1/trace/{correlation_id}".into(),
        "get",
        op("A business document's journey in time order: its events, the ledger and availability changes they made, workflow steps, outbox messages and exceptions (query)", Auth::Bearer)
            .path("correlation_id", id_param.clone())
            .query("limit", false, json!({"type": "integer", "minimum": 1, "maximum": 10000}))
            .ok(200, json_answer("the journey", object(&["correlation_id", "timeline"], json!({
                "correlation_id": {"type": "string"}, "timeline": array_of(json!({"type": "object"})),
            }))))
            .err(404, "nothing carries the id"),
    ));

    // Reconciliation.
    ops.push((
        "/v1/reconciliations".into(),
        "post",
        op("Run a reconciliation of a source: the body is its snapshot (CSV, or an X12 846), or empty for what the source has now (admin)", Auth::Bearer)
            .query("source", true, json!({"type": "string"}))
            .query("as_of", false, time.clone())
            .query("name", false, json!({"type": "string"}))
            .body(false, json!({
                "text/csv": {"schema": {"type": "string"}},
                "application/edi-x12": {"schema": {"type": "string"}}
            }))
            .ok(201, json_answer("the run, with counts by class and the first 100 variances with the action taken", schema_ref("Run")))
            .err(404, "unknown source")
            .err(409, "busy: the source is already running; no-snapshot: no snapshot was sent and the source has none")
            .err(413, "the snapshot exceeds [reconciliation] snapshot_max_bytes")
            .err(422, "invalid-snapshot: every bad line named; the snapshot is kept and an exception recorded"),
    ));
    ops.push((
        "/v1/reconciliations".into(),
        "get",
        op("Reconciliation runs, newest first (query)", Auth::Bearer)
            .query("source", false, json!({"type": "string"}))
            .query("limit", false, limit(u32::MAX))
            .ok(
                200,
                json_answer(
                    "{runs}",
                    object(&["runs"], json!({"runs": array_of(schema_ref("Run"))})),
                ),
            ),
    ));
    ops.push((
        "/v1/reconciliations/{id}".into(),
        "get",
        op(
            "One run with a page of its variance rows (query)",
            Auth::Bearer,
        )
        .path("id", id_param.clone())
        .query("after", false, limit(u32::MAX))
        .query("limit", false, limit(u32::MAX))
        .ok(
            200,
            json_answer("the run and its variances", schema_ref("Run")),
        )
        .err(404, "no such run"),
    ));
    ops.push((
        "/v1/reconciliations/{id}/variances.csv".into(),
        "get",
        op("Every variance row of a run as CSV (query)", Auth::Bearer)
            .path("id", id_param.clone())
            .ok(200, json!({"description": "item,location,lot,class,source_qty,ledger_qty,delta,action,reference,detail", "content": {"text/csv": {"schema": {"type": "string"}}}}))
            .err(404, "no such run"),
    ));

    // Partners and master data.
    ops.push((
        "/v1/partners".into(),
        "get",
        op(
            "Trading partners: interchange ids, channel, folders, version (query)",
            Auth::Bearer,
        )
        .ok(
            200,
            json_answer(
                "{partners}",
                object(
                    &["partners"],
                    json!({"partners": array_of(json!({"type": "object"}))}),
                ),
            ),
        )
        .no_engine(),
    ));
    ops.push((
        "/v1/partners/{id}/send/{set}".into(),
        "post",
        op("Render an 856 or 810 (body: a shipment) or a 940 (body: a release) for the partner and write it to its outbound folder (admin)", Auth::Bearer)
            .path("id", id_param.clone())
            .path("set", json!({"type": "string", "enum": ["856", "810", "940"]}))
            .json_body(any_object.clone())
            .ok(200, json_answer("{partner, set, file}", object(&["partner", "set", "file"], json!({
                "partner": {"type": "string"}, "set": {"type": "string"}, "file": {"type": "string"},
            }))))
            .err(400, "a malformed document, or a set the hub does not send on request")
            .err(404, "no such partner")
            .err(422, "the document cannot be rendered for the partner"),
    ));
    ops.push((
        "/v1/master".into(),
        "get",
        op(
            "Master data counts: items, locations, crosswalks, units (query)",
            Auth::Bearer,
        )
        .ok(
            200,
            json_answer(
                "the counts",
                object(
                    &["items", "locations", "crosswalks", "units"],
                    json!({
                        "items": {"type": "integer"}, "locations": {"type": "integer"},
                        "crosswalks": {"type": "integer"}, "units": {"type": "integer"},
                    }),
                ),
            ),
        )
        .no_engine(),
    ));
    ops.push((
        "/v1/master/{kind}".into(),
        "post",
        op("Replace one master data file (CSV body); a file with a bad row changes nothing (admin)", Auth::Bearer)
            .path("kind", json!({"type": "string", "enum": ["items", "locations", "crosswalks", "units"]}))
            .body(true, json!({"text/csv": {"schema": {"type": "string"}}}))
            .ok(200, json_answer("{replaced, counts}", object(&["replaced", "counts"], json!({
                "replaced": {"type": "string"}, "counts": {"type": "object"},
            }))))
            .err(400, "the file is not UTF-8 text")
            .err(404, "no such master file")
            .err(422, "bad rows, each with its line; nothing was changed"),
    ));

    // Channel webhooks.
    ops.push((
        "/v1/webhooks/{platform}/{channel}".into(),
        "post",
        op("Inbound Shopify (orders/create, orders/cancelled, refunds/create, inventory_levels/update) and WooCommerce (order.created, order.updated) webhooks, verified by their HMAC header instead of a bearer token", Auth::Signature)
            .path("platform", json!({"type": "string", "enum": ["shopify", "woocommerce"]}))
            .path("channel", id_param.clone())
            .body(true, json!({"application/json": {"schema": {}}}))
            .ok(200, json_answer("{status: allocated | oversold | released | in_sync | drift | ignored | held_for_review, duplicate?}", json!({"type": "object"})))
            .err(404, "no such platform, or no endpoint of the channel with a webhook_secret")
            .err(422, "a malformed body or an unknown item; kept as an exception"),
    ));

    ops
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `(path, method)` of every route `api.rs` gives its router (the dashboard's are merged
    /// from `dashboard/` and are not in it), read from its source.
    fn routed() -> BTreeSet<(String, String)> {
        let src = include_str!("api.rs");
        let mut out = BTreeSet::new();
        for (at, _) in src.match_indices(".route(") {
            let rest = src[at + ".route(".len()..].trim_start();
            let Some(rest) = rest.strip_prefix('"') else {
                continue;
            };
            let path = &rest[..rest.find('"').expect("a closed string")];
            // The method router: up to the `)` that closes `.route(`.
            let body = &rest[path.len() + 1..];
            let mut depth = 1;
            let end = body
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .expect("a closed route")
                .0;
            let router = &body[..end];
            for method in ["get", "post", "put", "patch", "delete"] {
                let call = format!("{method}(");
                let found = router.match_indices(&call).any(|(i, _)| {
                    router[..i]
                        .chars()
                        .next_back()
                        .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
                });
                if found {
                    out.insert((path.to_string(), method.to_string()));
                }
            }
        }
        assert!(out.len() > 40, "the routes were read: {out:?}");
        out
    }

    fn documented(doc: &Value) -> BTreeSet<(String, String)> {
        doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(p, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (p.clone(), m.clone()))
            })
            .collect()
    }

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc = document();
        let routed = routed();
        let documented = documented(&doc);
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty(),
            "routes without an operation: {missing:?}"
        );
        assert!(extra.is_empty(), "operations without a route: {extra:?}");
        for route in [
            ("/v1/reconciliations", "post"),
            ("/v1/reconciliations/{id}/variances.csv", "get"),
            ("/v1/items/{item}/history", "get"),
            ("/v1/trace/{correlation_id}", "get"),
            ("/metrics", "get"),
        ] {
            assert!(
                documented.contains(&(route.0.into(), route.1.into())),
                "{route:?}"
            );
        }
    }

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_in_the_document() {
        let doc = document();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 50, "{}", found.len());
        for r in found {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{r} points outside the document"));
            assert!(
                doc.pointer(pointer).is_some(),
                "{r} does not resolve in the document"
            );
        }
        assert!(
            !doc.to_string().contains("$defs"),
            "definitions live under components/schemas"
        );
    }

    #[test]
    fn every_operation_answers_its_errors_as_problems_with_a_numeric_status() {
        let doc = document();
        let problem = &doc["components"]["schemas"]["Problem"];
        assert_eq!(problem["properties"]["status"]["type"], "integer");
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, o) in ops.as_object().unwrap() {
                let answers = o["responses"].as_object().unwrap();
                assert!(
                    answers.keys().any(|c| c.starts_with('2')),
                    "{method} {path}: no success answer"
                );
                for (code, answer) in answers.iter().filter(|(c, _)| !c.starts_with('2')) {
                    assert_eq!(
                        answer["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{method} {path} {code}"
                    );
                }
                if o["security"] != json!([]) {
                    for code in ["401", "403"] {
                        assert!(answers.contains_key(code), "{method} {path}: no {code}");
                    }
                }
                if o.get("requestBody").is_some() {
                    for code in ["408", "413", "503"] {
                        assert!(answers.contains_key(code), "{method} {path}: no {code}");
                    }
                    assert!(
                        answers["503"]["headers"]["Retry-After"].is_object(),
                        "{method} {path}: 503 says Retry-After"
                    );
                }
            }
        }
    }
}
