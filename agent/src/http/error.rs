//! HTTP errors as Consul writes them: a status and a plain-text reason.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], self.message).into_response()
    }
}

impl From<legate_runtime::WriteError> for HttpError {
    fn from(e: legate_runtime::WriteError) -> Self {
        HttpError::internal(e.to_string())
    }
}

impl From<legate_runtime::ReadError> for HttpError {
    fn from(e: legate_runtime::ReadError) -> Self {
        HttpError::internal(e.to_string())
    }
}

pub type HttpResult = Result<Response, HttpError>;
