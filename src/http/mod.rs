//! The HTTP edge: the Alertmanager webhook, health, readiness, metrics and the
//! reload endpoint, over HTTP and (optionally) HTTPS with live certificate
//! renewal. `server` accepts connections and bounds them (with `activity`, what
//! each connection is doing), `routes` dispatches requests, `webhook` turns a body
//! into a notification for the executor; `auth` checks credentials, `edge` holds
//! the daemon handles the routes use.

pub mod activity;
pub mod auth;
pub mod edge;
pub mod reply;
pub mod routes;
pub mod server;
pub mod tls;
pub mod webhook;
