//! The OpenAPI 3.1 document of the API, served at `/openapi.json`, and the reference page at `/docs`
//! (Swagger UI, built into the binary). The document is generated from the code: each handler's
//! `#[utoipa::path]` sits on the handler, the router is built from those handlers (`routes!` in
//! `mod.rs`), so a route cannot be served without being documented, and the request schemas are
//! the parser's own types (`ToSchema` on `job::options` and `request.rs`). What every operation
//! shares (the error body, the render headers) is added once the routes' paths are in the document
//! ([`add_shared_responses`]), not repeated on each handler.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, OpenApi as Document, Ref, RefOr, Type};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::ERROR_CODES;

/// Every error response's body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // a schema: the body is written by `ApiError`'s `IntoResponse`
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong: a stable `code` to branch on and a `message` for people.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    #[schema(schema_with = error_code)]
    code: String,
    message: String,
}

/// The `code` of an error: one of [`ERROR_CODES`], each described with its status.
fn error_code() -> ObjectBuilder {
    let described: Vec<String> = ERROR_CODES
        .iter()
        .map(|(code, status, meaning)| format!("- `{code}` ({status}): {meaning}"))
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ERROR_CODES.iter().map(|(code, _, _)| *code)))
        .description(Some(format!(
            "A stable code to branch on:\n\n{}",
            described.join("\n")
        )))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pagewright",
        description = "Render pages in a shared headless Chromium: screenshots, PDFs, HTML, \
            Markdown, scraped fields, and the output of WebAssembly extractor plugins; now, or as \
            async jobs, batches and crawls. Every error is `{\"error\": {\"code\", \"message\"}}`; \
            the codes are listed under `ErrorDetail`.",
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&Tokens),
    tags(
        (name = "render", description = "Render a page now and answer with the output."),
        (name = "jobs", description = "Async jobs, batches and crawls: stored, run, followed."),
        (name = "plugins", description = "The plugin registry: list, describe, upload, delete."),
        (name = "operations", description = "Health, load, the scheduler, metrics."),
    )
)]
pub struct ApiDoc;

/// Adds what operations share, once the routes' paths are in the document: every operation's error
/// answer (any status but its successes: the one error body), and the headers a render's answer
/// has on each `render` operation's 200.
pub(super) fn add_shared_responses(document: &mut Document) {
    add_error_responses(document);
    add_render_headers(document);
}

fn add_error_responses(document: &mut Document) {
    let errors = ResponseBuilder::new()
        .description("An error: `{\"error\": {\"code\", \"message\"}}`")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            operation
                .responses
                .responses
                .insert("default".into(), RefOr::T(errors.clone()));
        }
    }
}

/// A merge's PDF is many pages': it has none of the render headers.
fn add_render_headers(document: &mut Document) {
    let header = |schema: Type, description: &str| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(schema))
            .description(Some(description))
            .build()
    };
    let headers = [
        (
            "x-pagewright-page-status",
            header(Type::Integer, "The page's HTTP status"),
        ),
        (
            "x-pagewright-page-url",
            header(Type::String, "Where the page ended up"),
        ),
        (
            "x-pagewright-plugin-fuel",
            header(
                Type::Integer,
                "Fuel the job's plugin calls used (also on errors)",
            ),
        ),
        (
            "x-pagewright-plugin-ms",
            header(
                Type::String,
                "Milliseconds the job's plugin calls took (also on errors)",
            ),
        ),
    ];
    for (path, item) in document.paths.paths.iter_mut() {
        let Some(operation) = item.post.as_mut().filter(|_| path != "/v1/pdf/merge") else {
            continue;
        };
        let is_render = operation
            .tags
            .as_ref()
            .is_some_and(|tags| tags.iter().any(|tag| tag == "render"));
        let Some(RefOr::T(ok)) = operation.responses.responses.get_mut("200") else {
            continue;
        };
        if is_render {
            for (name, header) in &headers {
                ok.headers.insert((*name).to_owned(), header.clone());
            }
        }
    }
}

/// The bearer tokens: a tenant's, the render token or the admin token, as the server has them.
struct Tokens;

impl Modify for Tokens {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Needed when the server has a render token or a tokens file; the admin \
                         token for changing plugins.",
                    ))
                    .build(),
            ),
        );
        document.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new("token", Vec::<String>::new()),
            // Open servers take requests without one.
            utoipa::openapi::security::SecurityRequirement::default(),
        ]);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::ERROR_CODES;

    /// Every route the server answers, by method and path: the router is built from the documented
    /// handlers, so this list is what a change to the API must also change.
    const ROUTES: &[(&str, &str)] = &[
        ("post", "/v1/screenshot"),
        ("post", "/v1/pdf"),
        ("post", "/v1/pdf/merge"),
        ("post", "/v1/content"),
        ("post", "/v1/scrape"),
        ("post", "/v1/markdown"),
        ("post", "/v1/debug"),
        ("post", "/v1/run/{plugin}"),
        ("post", "/v1/jobs"),
        ("get", "/v1/jobs/{id}"),
        ("delete", "/v1/jobs/{id}"),
        ("get", "/v1/jobs/{id}/result"),
        ("post", "/v1/batches"),
        ("get", "/v1/batches/{id}"),
        ("delete", "/v1/batches/{id}"),
        ("post", "/v1/crawls"),
        ("get", "/v1/crawls/{id}"),
        ("delete", "/v1/crawls/{id}"),
        ("get", "/v1/plugins"),
        ("get", "/v1/plugins/{name}"),
        ("put", "/v1/plugins/{name}"),
        ("delete", "/v1/plugins/{name}"),
        ("get", "/health"),
        ("get", "/v1/pressure"),
        ("get", "/v1/status"),
        ("get", "/v1/scheduler"),
        ("put", "/v1/scheduler/scorer"),
        ("delete", "/v1/scheduler/scorer"),
        ("get", "/metrics"),
    ];

    fn document() -> Value {
        let (_, document) = super::super::api_routes();
        serde_json::to_value(&document).expect("the document serializes")
    }

    #[test]
    fn every_route_is_documented_with_its_errors() {
        let document = document();
        let mut documented = Vec::new();
        for (path, operations) in document["paths"].as_object().expect("paths") {
            for (method, operation) in operations.as_object().expect("operations") {
                documented.push((method.clone(), path.clone()));
                let name = format!("{} {path}", method.to_uppercase());
                assert!(operation["summary"].is_string(), "{name} has a summary");
                assert!(operation["tags"][0].is_string(), "{name} has a tag");
                assert!(operation["responses"].as_object().expect("responses").len() >= 2);
                assert_eq!(
                    operation["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{name}'s errors are described"
                );
            }
        }
        let ok = &document["paths"]["/v1/screenshot"]["post"]["responses"]["200"];
        assert!(
            ok["headers"]["x-pagewright-plugin-fuel"].is_object(),
            "{ok}"
        );
        documented.sort();
        let mut expected: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| (method.to_string(), path.to_string()))
            .collect();
        expected.sort();
        assert_eq!(documented, expected);
    }

    #[test]
    fn every_error_code_is_listed_once_with_its_meaning() {
        let document = document();
        let code = &document["components"]["schemas"]["ErrorDetail"]["properties"]["code"];
        let listed: Vec<&str> = code["enum"]
            .as_array()
            .expect("an enum of codes")
            .iter()
            .map(|code| code.as_str().expect("a string"))
            .collect();
        let codes: Vec<&str> = ERROR_CODES.iter().map(|(code, _, _)| *code).collect();
        assert_eq!(listed, codes);
        let mut unique = codes.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), codes.len(), "no code is listed twice");
        let description = code["description"].as_str().expect("described");
        assert!(
            description.contains("`plugin_trapped` (422)"),
            "{description}"
        );
    }

    /// The render endpoints' bodies are the parser's own types: strict, with every option.
    #[test]
    fn request_bodies_are_the_parsers_types() {
        let document = document();
        let body = &document["paths"]["/v1/screenshot"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        let name = body["$ref"]
            .as_str()
            .expect("a schema reference")
            .trim_start_matches("#/components/schemas/");
        let schema = &document["components"]["schemas"][name];
        for field in [
            "url",
            "html",
            "goto",
            "page",
            "options",
            "timeout_ms",
            "fail_on",
        ] {
            assert!(
                schema["properties"][field].is_object(),
                "`{field}` in {name}: {schema}"
            );
        }
        let options = &document["components"]["schemas"]["ScreenshotOptions"];
        assert!(options["properties"]["full_page"].is_object(), "{options}");
        assert_eq!(
            options["additionalProperties"], false,
            "unknown fields are refused"
        );
        let length = &document["components"]["schemas"]["Length"];
        assert_eq!(
            length["oneOf"].as_array().map(Vec::len),
            Some(2),
            "{length}"
        );
    }
}
