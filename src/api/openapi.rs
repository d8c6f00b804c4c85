//! The OpenAPI 3.1 document of this API, derived from the handlers' annotations and the types
//! they take and answer with (`schema.rs`): request bodies, answers and parameter constraints.
//! The roles each route admits are added from `roles_of`, the same table the tests check
//! against the live router.

use axum::Json;
use serde_json::{json, Value};
use utoipa::OpenApi;

use super::schema;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "billpush",
        description = "Monthly bill SMS: delivery log, bills, flags, spam reports, receipts and replies."
    ),
    paths(
        super::reads::deliveries,
        super::reads::deliveries_csv,
        super::reads::bill,
        super::reads::flags,
        super::reads::spam,
        super::reads::runs,
        super::reads::audit,
        super::receipts::generic,
        super::receipts::jasmin,
        super::replies::receive,
        super::consent::set,
        super::alerts::list,
        super::reports::month,
        super::disputes::list,
        super::disputes::open,
        super::disputes::resolve,
        super::healthz,
        super::metrics_text,
        openapi_json,
    ),
    components(schemas(schema::ErrorBody))
)]
struct ApiDoc;

/// The roles a documented operation admits (`route_roles`), by name; empty for the open ones.
pub fn roles_of(method: &str, path: &str) -> Vec<&'static str> {
    if !path.starts_with("/api/v1/") {
        return Vec::new();
    }
    super::route_roles(&method.to_ascii_uppercase(), path).iter().map(|r| r.as_str()).collect()
}

#[utoipa::path(get, path = "/api/v1/openapi.json",
    responses((status = 200, description = "This document", body = Object)))]
pub async fn openapi_json() -> Json<Value> {
    Json(document())
}

pub fn document() -> Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
    document["info"]["version"] = json!(env!("CARGO_PKG_VERSION"));
    document["components"]["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer"}});
    let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    let refusal = |description: &str| json!({"description": description, "content": error.clone()});
    let paths = document["paths"].as_object_mut().expect("paths");
    for (path, operations) in paths.iter_mut() {
        for (method, operation) in operations.as_object_mut().expect("operations").iter_mut() {
            let roles = roles_of(method, path);
            let responses = operation["responses"].as_object_mut().expect("responses");
            if roles.is_empty() {
                continue;
            }
            responses.entry("400").or_insert_with(|| refusal("A malformed parameter or body, named in error"));
            responses.entry("401").or_insert_with(|| refusal("No token, or an unknown one"));
            responses
                .entry("403")
                .or_insert_with(|| refusal(&format!("The token's role is not {}", roles.join(" or "))));
            responses.entry("503").or_insert_with(|| refusal("The database did not answer; try again"));
            operation["security"] = json!([{"bearer": []}]);
            operation["x-roles"] = json!(roles);
        }
    }
    document
}
