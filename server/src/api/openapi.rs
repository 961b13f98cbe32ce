//! The OpenAPI 3 description of the HTTP API, `GET /v1/openapi.json`, generated from the code:
//! each handler carries a `#[utoipa::path]` (method, path, parameters, body and answer types)
//! and the wire types derive their schemas (`caas-api`'s `openapi` feature). The test below
//! fails when a route of the router is missing from the document.

use super::{
    access, addons, addons_dump, agent, apps, builds, canary, certs, checks, config, domains,
    drains, gateway, git, hooks, hosts, instances, logs, metrics, ports, prometheus, rename,
    resources, runs, scaling, servers, users,
};
use axum::Json;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "caas",
        description = "The caas control plane's HTTP API. docs/api.md describes each endpoint; \
                       every non-2xx answer is an ErrorBody."
    ),
    paths(
        document,
        apps::info,
        prometheus::metrics,
        apps::list,
        apps::create,
        apps::show,
        apps::destroy,
        rename::rename,
        apps::deploy,
        apps::releases,
        apps::release,
        config::rollback,
        canary::get,
        canary::start,
        canary::set,
        canary::promote,
        canary::abort,
        config::get,
        config::patch,
        apps::formation,
        apps::scale,
        apps::ps,
        instances::restart,
        instances::stop,
        resources::get,
        resources::put,
        checks::list,
        checks::patch,
        checks::settings,
        checks::patch_settings,
        domains::list,
        domains::add,
        domains::remove,
        domains::routing,
        domains::set_routing,
        certs::list,
        certs::add,
        certs::auto,
        certs::remove,
        ports::list,
        ports::add,
        ports::remove,
        access::list,
        access::add,
        access::remove,
        logs::stream,
        runs::start,
        metrics::app,
        metrics::history,
        scaling::list,
        scaling::set,
        scaling::off,
        scaling::alerts,
        scaling::set_alerts,
        scaling::clear_alerts,
        drains::list,
        drains::add,
        drains::remove,
        hooks::connect,
        hooks::show,
        hooks::disconnect,
        hooks::push_event,
        hooks::list,
        hooks::add,
        hooks::remove,
        builds::create,
        builds::list,
        builds::show,
        builds::output,
        builds::set_buildpack,
        builds::buildpacks,
        apps::load_images,
        addons::list,
        addons::create,
        addons::info,
        addons::update,
        addons::destroy,
        addons::attach,
        addons::detach,
        addons_dump::backup,
        addons_dump::restore,
        hosts::list,
        hosts::add,
        hosts::remove,
        servers::list,
        users::whoami,
        users::list,
        users::create,
        users::remove,
        users::tokens,
        users::create_token,
        users::revoke_token,
        users::access,
        users::grant,
        users::revoke,
        users::audit,
        agent::register,
        agent::assignments,
        agent::heartbeat,
        agent::logs,
        agent::image,
        gateway::routes,
        gateway::report,
        git::info_refs,
        git::receive_pack,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Every endpoint takes `Authorization: Bearer TOKEN` (except `/v1/info` and this document).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        doc.security = Some(vec![SecurityRequirement::new(
            "token",
            Vec::<String>::new(),
        )]);
    }
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "openapi", operation_id = "openapi_document", responses((status = 200, description = "an OpenAPI 3 document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routes `router()` defines, as (method, path), read from its source.
    fn routes() -> Vec<(String, String)> {
        let src = include_str!("mod.rs");
        let body = &src[src.find("pub fn router(").expect("router()")..];
        let mut out = Vec::new();
        let mut rest = body;
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let start = rest.find('"').expect("a path") + 1;
            let end = start + rest[start..].find('"').expect("its end");
            let path = rest[start..end].to_string();
            // The handlers up to the next route (or the end of the builder).
            let upto = rest.find(".route(").unwrap_or(rest.len());
            let handlers = &rest[end..upto];
            for method in ["get", "post", "put", "patch", "delete"] {
                let needle = format!("{method}(");
                if handlers.match_indices(&needle).any(|(j, _)| {
                    j == 0
                        || !handlers.as_bytes()[j - 1].is_ascii_alphanumeric()
                            && handlers.as_bytes()[j - 1] != b'_'
                }) {
                    out.push((method.to_string(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn every_route_is_in_the_document() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let routes = routes();
        assert!(
            routes.len() > 50,
            "the router's routes were not found: {routes:?}"
        );
        let mut missing = Vec::new();
        for (method, path) in &routes {
            if doc["paths"][path][method].is_null() {
                missing.push(format!("{} {path}", method.to_uppercase()));
            }
        }
        assert!(
            missing.is_empty(),
            "missing from /v1/openapi.json: {missing:?}"
        );
        // And nothing the router does not have.
        let paths = doc["paths"].as_object().unwrap();
        for (path, item) in paths {
            for method in item.as_object().unwrap().keys() {
                assert!(
                    routes.iter().any(|(m, p)| m == method && p == path),
                    "{method} {path} is in the document but not a route"
                );
            }
        }
        assert_eq!(
            doc["openapi"].as_str().map(|v| v.starts_with("3.")),
            Some(true)
        );
        // What OpenAPI requires of each operation: a unique id, and a description per answer.
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default().to_string();
                assert!(
                    ids.insert(id.clone()),
                    "{method} {path}: operationId {id:?} twice"
                );
                for (status, answer) in op["responses"].as_object().unwrap() {
                    assert!(
                        answer["description"].is_string(),
                        "{method} {path} {status} has no description"
                    );
                }
            }
        }
        assert!(
            doc["components"]["schemas"]["App"].is_object(),
            "{}",
            doc["components"]
        );
        assert!(doc["components"]["schemas"]["Release"]["properties"]["created_at"].is_object());
    }
}
