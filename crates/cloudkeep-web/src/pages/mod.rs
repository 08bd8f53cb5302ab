//! The pages, one module per area of the UI, as the API has one module
//! per area; `routes()` lists them all.

mod alerts;
mod anomalies;
mod assessments;
mod auth;
mod budgets;
mod connections;
mod coverage;
mod dashboard;
mod evidence;
mod resources;
mod settings;
mod spend;
mod tag_edits;

use axum::Router;
use cloudkeep_server::AppState;

/// Declares the pages once: the router, and `ROUTES` (method and path of
/// each), which the isolation test walks so that no page can skip it.
macro_rules! pages {
    ($($method:ident $path:literal => $handler:path,)*) => {
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        pub fn routes() -> Router<AppState> {
            Router::new()$(.route($path, pages!(@method $method)($handler)))*
        }
    };
    (@method GET) => { axum::routing::get };
    (@method POST) => { axum::routing::post };
}

pages! {
    GET "/login" => auth::login_form,
    POST "/login" => auth::login,
    POST "/logout" => auth::logout,
    GET "/account" => auth::account,
    POST "/account/password" => auth::change_password,
    GET "/" => dashboard::dashboard,
    GET "/resources" => resources::list,
    GET "/resources/bulk" => resources::bulk_form,
    POST "/resources/bulk" => resources::bulk_apply,
    POST "/resources/bulk/preview" => resources::bulk_preview,
    GET "/resources/{id}" => resources::detail,
    POST "/resources/{id}/tags" => resources::edit_tag,
    GET "/connections" => connections::list,
    GET "/connections/new" => connections::new_form,
    POST "/connections/new" => connections::create,
    POST "/connections/check" => connections::check,
    GET "/connections/consent/start" => connections::consent_start,
    GET "/connections/consent/callback" => connections::consent_callback,
    GET "/connections/consent/{flow}" => connections::consent_pick,
    POST "/connections/consent/{flow}" => connections::consent_complete,
    GET "/connections/{id}" => connections::detail,
    POST "/connections/{id}" => connections::update,
    POST "/connections/{id}/sync" => connections::sync,
    POST "/connections/{id}/reauth" => connections::reauth,
    POST "/connections/{id}/revoke" => connections::revoke,
    POST "/subscriptions/{id}/level" => connections::set_level,
    GET "/sync-runs/{id}" => connections::run,
    GET "/controls" => evidence::controls,
    GET "/controls/{id}" => evidence::control,
    GET "/evidence" => evidence::list,
    GET "/evidence/{id}" => evidence::detail,
    GET "/assessments" => assessments::list,
    POST "/assessments" => assessments::create,
    GET "/assessments/{id}" => assessments::detail,
    POST "/assessments/{id}/attach" => assessments::attach,
    POST "/assessments/{id}/detach" => assessments::detach,
    POST "/assessments/{id}/approve" => assessments::approve,
    POST "/assessments/{id}/samples" => assessments::draw,
    POST "/assessments/{id}/invitations" => assessments::invite,
    POST "/assessments/{id}/invitations/revoke" => assessments::revoke_invitation,
    GET "/alerts" => alerts::alerts,
    POST "/alerts/{id}/acknowledge" => alerts::acknowledge,
    GET "/audit" => alerts::audit_log,
    GET "/audit/verify" => alerts::verify,
    GET "/settings" => settings::index,
    GET "/settings/users" => settings::users_page,
    POST "/settings/users" => settings::add_user,
    POST "/settings/users/{id}/role" => settings::change_role,
    POST "/settings/users/{id}/disable" => settings::disable_user,
    POST "/settings/users/{id}/enable" => settings::enable_user,
    GET "/settings/tokens" => settings::tokens_page,
    POST "/settings/tokens" => settings::create_token,
    POST "/settings/tokens/{id}/revoke" => settings::revoke_token,
    GET "/settings/webhooks" => settings::webhooks_page,
    POST "/settings/webhooks" => settings::create_webhook,
    POST "/settings/webhooks/{id}/test" => settings::test_webhook,
    POST "/settings/webhooks/{id}/delete" => settings::delete_webhook,
    GET "/settings/evidence" => settings::evidence_page,
    POST "/settings/evidence/threshold" => settings::set_threshold,
    POST "/settings/evidence/mapping" => settings::change_mapping,
    GET "/spend" => spend::explorer,
    GET "/spend/view.csv" => spend::view_csv,
    GET "/budgets" => budgets::list,
    POST "/budgets" => budgets::create,
    GET "/budgets/{id}" => budgets::detail,
    POST "/budgets/{id}" => budgets::update,
    POST "/budgets/{id}/delete" => budgets::delete,
    GET "/anomalies" => anomalies::list,
    GET "/anomalies/{id}" => anomalies::detail,
    GET "/settings/tag-aliases" => settings::aliases_page,
    POST "/settings/tag-aliases" => settings::add_alias,
    POST "/settings/tag-aliases/remove" => settings::remove_alias,
    GET "/settings/retention" => settings::retention_page,
    POST "/settings/retention" => settings::set_retention,
    GET "/coverage" => coverage::coverage,
    POST "/coverage/required-keys" => coverage::set_required_keys,
    POST "/coverage/fix" => coverage::fix,
    GET "/tag-edits" => tag_edits::list,
    POST "/tag-edits/{id}/resolve" => tag_edits::resolve,
}
