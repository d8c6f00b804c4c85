//! The OpenAPI 3.1 document of this API, built from the same route table the tests check
//! against the live router.

use serde_json::{json, Map, Value};

/// One documented route: method, path, the roles it admits (empty: open), summary, query
/// parameters.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub roles: &'static [&'static str],
    pub summary: &'static str,
    pub query: &'static [(&'static str, &'static str)],
}

const READERS: &[&str] = &["regulator", "operator"];
const DELIVERY_QUERY: &[(&str, &str)] = &[
    ("month", "YYYY-MM"),
    ("msisdn", "any accepted form of a number; normalised"),
    ("status", "a delivery status"),
    ("from", "RFC 3339: last change at or after"),
    ("to", "RFC 3339: last change before"),
    ("limit", "1 to 1000, default 100"),
    ("cursor", "next_cursor of the previous page"),
];

pub const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/api/v1/deliveries",
        roles: READERS,
        summary: "Notifications with their status history, page by page",
        query: DELIVERY_QUERY,
    },
    Route {
        method: "get",
        path: "/api/v1/deliveries.csv",
        roles: READERS,
        summary: "The same rows as CSV, streamed",
        query: DELIVERY_QUERY,
    },
    Route {
        method: "get",
        path: "/api/v1/bills/{subscriber_id}/{month}",
        roles: READERS,
        summary: "One subscriber's bill for a month",
        query: &[],
    },
    Route {
        method: "get",
        path: "/api/v1/flags",
        roles: READERS,
        summary: "Unexplained-deduction flags of a month",
        query: &[("month", "YYYY-MM, required")],
    },
    Route {
        method: "get",
        path: "/api/v1/spam",
        roles: READERS,
        summary: "Spam-number aggregates of a month",
        query: &[("month", "YYYY-MM, required"), ("flagged", "true or false")],
    },
    Route {
        method: "get",
        path: "/api/v1/runs",
        roles: READERS,
        summary: "Billing runs per month with delivery counts, flags and late records",
        query: &[],
    },
    Route {
        method: "get",
        path: "/api/v1/audit",
        roles: &["operator"],
        summary: "The audit log of regulator and operator requests",
        query: &[("limit", "1 to 1000, default 100"), ("cursor", "next_cursor of the previous page")],
    },
    Route {
        method: "post",
        path: "/api/v1/dlr",
        roles: &["gateway"],
        summary: "A delivery receipt: {message_id, status, at}",
        query: &[],
    },
    Route {
        method: "post",
        path: "/api/v1/dlr/jasmin",
        roles: &["jasmin"],
        summary: "Jasmin's form-encoded receipt; answers ACK/Jasmin",
        query: &[("token", "the Jasmin receipt credential (role jasmin)")],
    },
    Route {
        method: "post",
        path: "/api/v1/mo",
        roles: &["gateway"],
        summary: "A subscriber's reply: {from, to, text, received_at}",
        query: &[],
    },
    Route { method: "get", path: "/api/v1/openapi.json", roles: &[], summary: "This document", query: &[] },
    Route { method: "get", path: "/healthz", roles: &[], summary: "Database (and broker) health", query: &[] },
    Route { method: "get", path: "/metrics", roles: &[], summary: "Prometheus metrics", query: &[] },
];

pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let mut parameters: Vec<Value> = route
            .query
            .iter()
            .map(|(name, description)| json!({"name": name, "in": "query", "required": description.ends_with("required"), "description": description, "schema": {"type": "string"}}))
            .collect();
        for segment in route.path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')) {
            parameters.push(json!({"name": segment, "in": "path", "required": true, "schema": {"type": "string"}}));
        }
        let mut responses = json!({"200": {"description": "OK"}});
        if !route.roles.is_empty() {
            responses["400"] = json!({"description": "A malformed parameter or body, named in {\"error\"}"});
            responses["401"] = json!({"description": "No token, or an unknown one"});
            responses["403"] =
                json!({"description": format!("The token's role is not one of: {}", route.roles.join(", "))});
        }
        let mut operation = json!({"summary": route.summary, "parameters": parameters, "responses": responses});
        if !route.roles.is_empty() {
            operation["security"] = json!([{"bearer": []}]);
            operation["x-roles"] = json!(route.roles);
        }
        paths.entry(route.path).or_insert_with(|| json!({}))[route.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "billpush", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    })
}
