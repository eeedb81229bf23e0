//! Request handlers, one file per verb family. Each takes a [`Ctx`] and returns a response or
//! an [`ApiError`]; errors are rendered in exactly one place (`errors.rs`).

mod convert;
mod delete;
pub mod node_proxy;
mod read;
mod render;
mod reviews;
mod services;
mod subresources;
mod tokens;
mod watch;
mod write;

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;

use super::ApiServer;
use super::errors::ApiError;
use super::request::{Query, ResourceRequest, Verb};
use super::resources::{Storage, Subresource};
use crate::auth::UserIdentity;

pub use services::{Ipv4Cidr, kubernetes_service_ip};

/// Everything a handler needs about one request.
pub struct Ctx {
    pub api: Arc<ApiServer>,
    pub req: ResourceRequest,
    pub query: Query,
    pub headers: HeaderMap,
    pub user: UserIdentity,
    pub body: Bytes,
}

impl Ctx {
    pub fn name(&self) -> &str {
        self.req.name.as_deref().unwrap_or("")
    }

    pub fn namespace(&self) -> Option<&str> {
        self.req.namespace.as_deref()
    }

    /// The object the request names, as stored now.
    pub async fn current(&self) -> Result<super::storage::Stored, ApiError> {
        super::storage::get(
            &self.api.store,
            self.req.def,
            self.namespace(),
            self.name(),
            None,
        )
        .await
    }

    pub fn user_agent(&self) -> Option<&str> {
        self.headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
    }
}

pub async fn handle(ctx: Ctx) -> Result<Response, ApiError> {
    use Subresource as S;
    let def = ctx.req.def;
    if def.storage == Storage::Virtual && def.kind == "Binding" {
        return subresources::bind(ctx).await;
    }
    if def.storage == Storage::Virtual {
        return match ctx.req.verb {
            Verb::Create => reviews::create(ctx).await,
            _ => Err(ApiError::MethodNotAllowed),
        };
    }
    if def.storage == Storage::ReadOnly {
        return match ctx.req.verb {
            Verb::List | Verb::Get => read::component_statuses(ctx).await,
            _ => Err(ApiError::MethodNotAllowed),
        };
    }
    match (ctx.req.verb, ctx.req.subresource) {
        (Verb::Get, None | Some(S::Status | S::EphemeralContainers | S::Resize)) => {
            read::get(ctx).await
        }
        (Verb::List, None) => read::list(ctx).await,
        (Verb::Watch, None) => watch::watch(ctx).await,
        (Verb::Create, None) => write::create(ctx).await,
        (Verb::Update, None | Some(S::Status | S::EphemeralContainers | S::Resize)) => {
            write::update(ctx).await
        }
        (Verb::Patch, None | Some(S::Status | S::EphemeralContainers | S::Resize)) => {
            write::patch(ctx).await
        }
        (Verb::Delete, None) => delete::delete(ctx).await,
        (Verb::DeleteCollection, None) => delete::delete_collection(ctx).await,
        (Verb::Get, Some(S::Scale)) => subresources::get_scale(ctx).await,
        (Verb::Update | Verb::Patch, Some(S::Scale)) => subresources::update_scale(ctx).await,
        (Verb::Create, Some(S::Binding)) => subresources::bind(ctx).await,
        (Verb::Update, Some(S::Finalize)) => subresources::finalize_namespace(ctx).await,
        (Verb::Create, Some(S::Eviction)) => subresources::evict(ctx).await,
        (Verb::Get | Verb::Create, Some(S::Log | S::Exec | S::Attach | S::PortForward)) => {
            subresources::no_node_agent(ctx).await
        }
        (Verb::Create, Some(S::Token)) => tokens::create_token(ctx).await,
        (_, Some(S::Proxy)) => subresources::not_yet(ctx).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}
