//! The one error type of the server, rendered as OpenAI renders errors:
//! `{"error": {"message", "type", "param", "code"}}` with a matching HTTP status.
//!
//! Messages are written for the client. Whatever went wrong inside (a model error, a worker that
//! stopped) is logged on the server and answered with a generic message: internals never leak.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `server_error`, ...
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    /// 400: the request is wrong; `param` names the field.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError {
            param: param.map(str::to_string),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn bad_json() -> ApiError {
        ApiError::invalid(
            None,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
        )
    }

    pub fn context_exceeded(param: &str, prompt: usize, n_ctx: usize) -> ApiError {
        ApiError::invalid(
            Some(param),
            format!(
                "This model's maximum context length is {n_ctx} tokens. However, your {param} resulted in {prompt} tokens, which leaves no room for a completion. Please reduce the length of the {param}."
            ),
        )
        .with_code("context_length_exceeded")
    }

    pub fn unknown_model(model: &str) -> ApiError {
        ApiError {
            param: Some("model".into()),
            code: Some("model_not_found"),
            ..ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("The model `{model}` does not exist or you do not have access to it."),
            )
        }
    }

    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Invalid URL ({path})"),
        )
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "This URL does not accept that HTTP method.",
        )
    }

    /// 403 to a CORS preflight from an origin that is not allowed.
    pub fn origin_refused(origin: &str, cors_off: bool) -> ApiError {
        let why = if cors_off {
            "This server takes no cross-origin requests from browsers (it was started without allowed origins)."
        } else {
            "This server does not allow cross-origin requests from this origin."
        };
        ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            format!("{why} Origin: {origin}"),
        )
        .with_code("origin_not_allowed")
    }

    pub fn unauthorized(present: bool) -> ApiError {
        let message = if present {
            "Incorrect API key provided. Pass the key the server was started with as `Authorization: Bearer KEY`."
        } else {
            "You didn't provide an API key. Pass it as `Authorization: Bearer KEY`."
        };
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
            .with_code("invalid_api_key")
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The request body is larger than the server's limit of {limit} bytes."),
        )
        .with_code("request_too_large")
    }

    /// 503: every slot is busy and the queue is full; the client should retry.
    pub fn overloaded(queue: usize) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_overloaded",
            format!(
                "The server is overloaded ({queue} requests are already waiting). Please retry after a short wait."
            ),
        )
        .with_code("queue_full")
    }

    pub fn shutting_down() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "The server is shutting down.",
        )
    }

    /// 500 with a generic message; the cause is logged here, not sent.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        eprintln!("camelid serve: internal error: {cause}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The server had an error while processing your request.",
        )
    }

    /// The JSON body, also sent as a server-sent event when a stream fails midway.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body().to_string(),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
