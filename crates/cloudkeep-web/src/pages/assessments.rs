//! Assessments: the list and the form that creates one (name, audit
//! period, controls in scope), and an assessment's page: its period,
//! controls and state, the attached evidence with each control's Type II
//! population, attaching (everything in scope, or chosen rows) and
//! detaching while a draft, approval (owners and auditors), evidence that
//! changed after approval, samples drawn with a seed (redrawn with the
//! same seed, the same rows), the exports (the API's own routes, which the
//! session cookie reads), and an owner's invitations of an auditor.
//!
//! Every figure and every rule is the API's (`cloudkeep_server::api::
//! assessments`): the page only reads the form's text (a date, a number)
//! and shows the API's refusal beside what was typed.

use std::collections::BTreeSet;

use askama::Template;
use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use cloudkeep_domain::Permission;
use cloudkeep_domain::assessment::{AssessmentState, DEFAULT_INVITATION_DAYS, InvitationState};
use cloudkeep_domain::evidence::ControlId;
use cloudkeep_server::api::assessments::{self as api, Reader};
use cloudkeep_server::api::evidence as evidence_api;
use cloudkeep_server::wire::{
    AssessmentDetail, AssessmentView, AttachRequest, InvitationCreated, InvitationRequest,
    InvitationView, NewAssessmentRequest, SampleRequest, SampleView,
};
use cloudkeep_server::{ApiError, AppState, Body, Params};
use serde::Deserialize;
use uuid::Uuid;

use super::evidence::{EvidenceLine, evidence_line};
use crate::format;
use crate::page::{Chrome, PageResult, Problem, Section, form_page, is_refusal, notice, see_other};
use crate::session::{Form, Web, all_of, query, query_with};

/// Assessments the list shows (the API's largest page).
const LISTED: &str = "1000";
/// Attached rows, and candidate rows, a page shows at a time.
const ROWS: &str = "50";

/// What an assessment page says after a change it redirected from: fixed
/// texts, so a link cannot make the page say something else.
fn notice_text(key: Option<&str>, n: Option<u64>) -> Option<String> {
    let n = n.unwrap_or(0);
    let s = if n == 1 { "" } else { "s" };
    Some(match key? {
        "assessment_created" => {
            "Assessment created as a draft: attach the period's evidence, then approve it.".into()
        }
        "attached" if n == 0 => {
            "Nothing new was attached: those rows were attached already.".into()
        }
        "attached" => format!("{n} evidence row{s} attached."),
        "detached" => "Evidence row detached.".into(),
        "approved" => {
            "Approved: the assessment and its attached evidence can no longer change.".into()
        }
        "sample_drawn" => {
            "Sample drawn; its seed is kept with it, so anyone can redo the draw.".into()
        }
        "invitation_revoked" => {
            "Invitation revoked: its secret no longer reads this assessment.".into()
        }
        other => return notice(Some(other), Some(n)),
    })
}

/// The badge class of a state (the stylesheet's colours).
fn state_class(s: AssessmentState) -> &'static str {
    match s {
        AssessmentState::Draft => "warn",
        AssessmentState::Approved => "pass",
    }
}

fn invitation_class(s: InvitationState) -> &'static str {
    match s {
        InvitationState::Active => "active",
        InvitationState::Expired => "not_collected",
        InvitationState::Revoked => "revoked",
    }
}

/// A period as people read it: whole days as dates, otherwise to the minute.
fn period_text(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let midnight = NaiveTime::MIN;
    let whole_days =
        start.time() == midnight && end.time().format("%H:%M:%S").to_string() == "23:59:59";
    if whole_days {
        format!("{} to {}", start.format("%Y-%m-%d"), end.format("%Y-%m-%d"))
    } else {
        format!("{} to {}", format::when(start), format::when(end))
    }
}

fn controls_text(a: &AssessmentView) -> String {
    a.scope
        .iter()
        .map(|s| s.control.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The refusal a form shows beside what was typed; the rest are error pages.
fn refused(e: ApiError) -> Result<String, Problem> {
    if is_refusal(&e) {
        Ok(e.message)
    } else {
        Err(e.into())
    }
}

/// A form for those whose role allows `p`; the API refuses the others
/// anyway, and this says so before reading what they typed.
fn require(web: &Web, p: Permission, what: &str) -> Result<(), Problem> {
    if web.may(p) {
        Ok(())
    } else {
        Err(ApiError::forbidden(what).into())
    }
}

/// Who did something, as the audit log names them; "you" for the reader.
fn who(web: &Web, actor: &str) -> String {
    if actor == web.auth.actor() {
        "you".into()
    } else {
        actor.to_string()
    }
}

/// A SHA-256 as a page shows it: its start (the whole is in the exports).
fn short_hash(hash: &str) -> String {
    format!("{}…", &hash[..hash.len().min(16)])
}

fn reader(web: &Web) -> Reader {
    Reader::Member(web.caller())
}

// ---- the list ----

/// The new assessment's form as typed: strings, so a refused form comes
/// back exactly as it was sent (the controls are the checked boxes).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct NewAssessmentForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub period_start: String,
    #[serde(default)]
    pub period_end: String,
}

/// The form as the template shows it.
pub struct NewForm {
    pub name: String,
    pub period_start: String,
    pub period_end: String,
    /// Each control of the catalogue: id, title, checked.
    pub controls: Vec<(String, String, bool)>,
}

impl NewForm {
    fn of(form: NewAssessmentForm, checked: &[String]) -> Self {
        NewForm {
            name: form.name,
            period_start: form.period_start,
            period_end: form.period_end,
            controls: ControlId::ALL
                .iter()
                .map(|c| {
                    (
                        c.to_string(),
                        c.title().to_string(),
                        checked.iter().any(|x| x == c.as_str()),
                    )
                })
                .collect(),
        }
    }

    /// A new assessment: the last 90 days, every control.
    fn new_assessment(today: NaiveDate) -> Self {
        let all: Vec<String> = ControlId::ALL.iter().map(|c| c.to_string()).collect();
        NewForm::of(
            NewAssessmentForm {
                name: String::new(),
                period_start: (today - chrono::Duration::days(90)).to_string(),
                period_end: today.to_string(),
            },
            &all,
        )
    }

    /// The API's request. Only reading the typed text happens here (a
    /// date that is not one); every rule about assessments is the API's.
    fn request(&self) -> Result<NewAssessmentRequest, String> {
        let day = |field: &str, raw: &str| -> Result<NaiveDate, String> {
            let raw = raw.trim();
            if raw.is_empty() {
                return Err(format!("{field} is missing: give a date (YYYY-MM-DD)."));
            }
            NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .map_err(|_| format!("{field}: '{raw}' is not a date (YYYY-MM-DD)."))
        };
        let start = day("The period's first day", &self.period_start)?;
        let end = day("The period's last day", &self.period_end)?;
        let controls = self
            .controls
            .iter()
            .filter(|(_, _, checked)| *checked)
            .map(|(id, _, _)| id.parse::<ControlId>().map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NewAssessmentRequest {
            name: self.name.clone(),
            // The period is inclusive: from the first day's start to the
            // last day's end.
            period_start: start.and_time(NaiveTime::MIN).and_utc(),
            period_end: end
                .and_hms_milli_opt(23, 59, 59, 999)
                .expect("a valid time")
                .and_utc(),
            controls,
        })
    }
}

/// An assessment as a line of the list.
pub struct ListLine {
    pub id: String,
    pub name: String,
    pub period: String,
    pub state: String,
    pub state_class: &'static str,
    pub controls: String,
    pub evidence: String,
    /// Rows that changed after approval ("draft" for a draft).
    pub changed: String,
    pub changed_any: bool,
}

#[derive(Template)]
#[template(path = "assessments.html")]
struct ListPage {
    chrome: Chrome,
    assessments: Vec<ListLine>,
    may_create: bool,
    form: NewForm,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
    n: Option<u64>,
}

pub async fn list(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: NoticeQuery = query(&uri)?;
    let form = NewForm::new_assessment(state.store.now().date_naive());
    render_list(
        &state,
        &web,
        notice_text(q.notice.as_deref(), q.n),
        form,
        None,
    )
    .await
}

async fn render_list(
    state: &AppState,
    web: &Web,
    notice_text: Option<String>,
    form: NewForm,
    error: Option<String>,
) -> PageResult {
    let Json(page) = api::list_assessments(
        State(state.clone()),
        web.caller(),
        Params(api::AssessmentsQuery {
            limit: Some(LISTED.into()),
            after: None,
        }),
    )
    .await?;
    let mut assessments = Vec::with_capacity(page.items.len());
    for a in &page.items {
        // What changed after approval is the API's reading of one assessment.
        let changed = if a.state == AssessmentState::Approved {
            let Json(d) =
                api::get_assessment(State(state.clone()), reader(web), Path(a.id.to_string()))
                    .await?;
            Some(d.changed_after_approval.len())
        } else {
            None
        };
        let changed_any = changed.is_some_and(|n| n > 0);
        let changed = match changed {
            Some(n) if n > 0 => format!("{} changed", format::count(n as u64)),
            Some(_) => "0".to_string(),
            None => "draft".to_string(),
        };
        assessments.push(ListLine {
            id: a.id.to_string(),
            name: a.name.clone(),
            period: period_text(a.period_start, a.period_end),
            state: a.state.to_string(),
            state_class: state_class(a.state),
            controls: controls_text(a),
            evidence: format::count(a.evidence),
            changed,
            changed_any,
        });
    }
    let chrome = Chrome::new(web, "Assessments", Section::Assessments).with_notice(notice_text);
    let refused = error.is_some();
    Ok(form_page(
        &ListPage {
            chrome,
            assessments,
            may_create: web.may(Permission::ManageAssessments),
            form,
            error,
        },
        refused,
    ))
}

pub async fn create(
    State(state): State<AppState>,
    Form { web, form, fields }: Form<NewAssessmentForm>,
) -> PageResult {
    require(&web, Permission::ManageAssessments, "creating assessments")?;
    let typed = NewForm::of(form, &all_of(&fields, "control"));
    let request = match typed.request() {
        Ok(r) => r,
        Err(message) => return render_list(&state, &web, None, typed, Some(message)).await,
    };
    match api::create_assessment(State(state.clone()), web.caller(), Body(request)).await {
        Ok((_, Json(made))) => Ok(see_other(&format!(
            "/assessments/{}?notice=assessment_created",
            made.id
        ))),
        Err(e) => {
            let message = refused(e)?;
            render_list(&state, &web, None, typed, Some(message)).await
        }
    }
}

// ---- one assessment ----

/// The page's query: a notice, the attached rows' page, and the control
/// whose evidence is offered to attach (and that list's page).
#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    notice: Option<String>,
    n: Option<u64>,
    after: Option<String>,
    candidates: Option<String>,
    cafter: Option<String>,
}

/// The sample form as typed.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct SampleForm {
    #[serde(default)]
    pub control: String,
    #[serde(default)]
    pub size: String,
    #[serde(default)]
    pub seed: String,
}

/// The invitation form as typed.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub days: String,
}

/// Which form a refusal belongs to, so it shows beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Attach,
    Evidence,
    Approve,
    Sample,
    Invite,
}

impl At {
    /// As the template names it.
    fn name(self) -> &'static str {
        match self {
            At::Attach => "attach",
            At::Evidence => "evidence",
            At::Approve => "approve",
            At::Sample => "sample",
            At::Invite => "invite",
        }
    }
}

/// What one rendering of the page shows besides the assessment.
#[derive(Default)]
struct View {
    query: DetailQuery,
    /// The raw query, for the pages' links.
    raw_query: String,
    sample: SampleForm,
    invite: InviteForm,
    created: Option<InvitationCreated>,
    error: Option<(At, String)>,
}

pub struct Head {
    pub id: String,
    pub name: String,
    pub period: String,
    pub state: String,
    pub state_class: &'static str,
    pub draft: bool,
    pub created: String,
    pub approved: Option<String>,
    pub evidence_count: String,
}

pub struct ScopeLine {
    pub id: String,
    pub title: String,
    pub checks: Vec<String>,
    pub population: String,
    pub hash: String,
    pub short_hash: String,
}

pub struct AttachedLine {
    pub e: EvidenceLine,
    pub attached: String,
    /// Later evidence differs from this row (after approval).
    pub changed: bool,
}

pub struct ChangeLine {
    pub attested: String,
    pub e: EvidenceLine,
}

pub struct Candidates {
    pub control: String,
    pub controls: Vec<(String, bool)>,
    pub rows: Vec<(EvidenceLine, bool)>,
    pub next: Option<String>,
    pub error: Option<String>,
}

pub struct SampleLine {
    pub id: String,
    pub control: String,
    pub seed: String,
    pub size: u64,
    pub population: String,
    pub hash: String,
    pub short_hash: String,
    pub drawn: String,
    pub items: Vec<String>,
}

pub struct InvitationLine {
    pub id: String,
    pub email: String,
    pub state: String,
    pub state_class: &'static str,
    pub active: bool,
    pub created: String,
    pub expires: String,
}

pub struct Export {
    pub id: &'static str,
    pub label: &'static str,
    pub href: String,
    pub what: &'static str,
}

#[derive(Template)]
#[template(path = "assessment.html")]
struct DetailPage {
    chrome: Chrome,
    a: Head,
    controls: Vec<ScopeLine>,
    evidence: Vec<AttachedLine>,
    next: Option<String>,
    changes: Vec<ChangeLine>,
    candidates: Option<Candidates>,
    samples: Vec<SampleLine>,
    sample: SampleForm,
    invitations: Vec<InvitationLine>,
    invite: InviteForm,
    /// A new invitation: email, secret (shown once), expiry.
    created: Option<(String, String, String)>,
    exports: Vec<Export>,
    may_manage: bool,
    may_approve: bool,
    may_sample: bool,
    may_invite: bool,
    /// The refusal, beside the form it belongs to.
    error: Option<(At, String)>,
}

impl DetailPage {
    /// The refusal of the form `at` names, if it was that one.
    fn error_at(&self, at: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(a, _)| a.name() == at)
            .map(|(_, m)| m.as_str())
    }
}

fn line_of_invitation(web: &Web, i: &InvitationView) -> InvitationLine {
    InvitationLine {
        id: i.id.to_string(),
        email: i.email.clone(),
        state: i.state.to_string(),
        state_class: invitation_class(i.state),
        active: i.state == InvitationState::Active,
        created: format!(
            "{} by {}",
            format::when(i.created_at),
            who(web, &i.created_by)
        ),
        expires: match i.revoked_at {
            Some(r) => format!("revoked {}", format::when(r)),
            None => format::when(i.expires_at),
        },
    }
}

fn line_of_sample(web: &Web, s: &SampleView) -> SampleLine {
    SampleLine {
        id: s.id.to_string(),
        control: s.control.to_string(),
        seed: s.seed.clone(),
        size: s.size,
        population: format::count(s.population),
        hash: s.population_hash.clone(),
        short_hash: short_hash(&s.population_hash),
        drawn: format!("{} by {}", format::when(s.drawn_at), who(web, &s.drawn_by)),
        items: s.evidence.iter().map(Uuid::to_string).collect(),
    }
}

fn exports(id: &str) -> Vec<Export> {
    let href = |q: &str| format!("/api/v1/assessments/{id}/export?{q}");
    vec![
        Export {
            id: "export-csv",
            label: "CSV",
            href: href("format=csv"),
            what: "one line per attached row",
        },
        Export {
            id: "export-json",
            label: "JSON",
            href: href("format=json"),
            what: "the assessment, its evidence and samples",
        },
        Export {
            id: "export-oscal",
            label: "OSCAL assessment results",
            href: href("format=oscal&document=results"),
            what: "OSCAL 1.1",
        },
        Export {
            id: "export-oscal-plan",
            label: "OSCAL assessment plan",
            href: href("format=oscal&document=plan"),
            what: "the plan the results reference",
        },
        Export {
            id: "export-oscal-catalog",
            label: "OSCAL catalog",
            href: href("format=oscal&document=catalog"),
            what: "the criteria in scope",
        },
        Export {
            id: "export-zip",
            label: "Audit package (zip)",
            href: href("format=zip"),
            what: "all of the above, the period's audit events and their chain's verification",
        },
    ]
}

async fn render_detail(state: &AppState, web: &Web, id: String, view: View) -> PageResult {
    let Json(AssessmentDetail {
        assessment: a,
        changed_after_approval,
    }) = api::get_assessment(State(state.clone()), reader(web), Path(id.clone())).await?;
    let id = a.id.to_string();
    let draft = a.state == AssessmentState::Draft;
    let q = &view.query;
    let Json(attached) = api::list_attached(
        State(state.clone()),
        reader(web),
        Path(id.clone()),
        Params(api::AssessmentsQuery {
            limit: Some(ROWS.into()),
            after: q.after.clone(),
        }),
    )
    .await?;
    // Each control's population (its attached rows): the API's own count.
    let mut controls = Vec::with_capacity(a.scope.len());
    let mut in_scope: BTreeSet<Uuid> = BTreeSet::new();
    for s in &a.scope {
        let Json(p) = api::population(
            State(state.clone()),
            reader(web),
            Path(id.clone()),
            Params(api::PopulationQuery {
                control: Some(s.control),
            }),
        )
        .await?;
        in_scope.extend(p.evidence.iter().copied());
        controls.push(ScopeLine {
            id: s.control.to_string(),
            title: s.control.title().to_string(),
            checks: s.checks.iter().map(|c| c.to_string()).collect(),
            population: format::count(p.size),
            short_hash: short_hash(&p.population_hash),
            hash: p.population_hash,
        });
    }
    let changed: BTreeSet<Uuid> = changed_after_approval.iter().map(|c| c.attested).collect();
    let evidence = attached
        .items
        .iter()
        .map(|r| AttachedLine {
            e: evidence_line(&r.evidence),
            attached: format!(
                "{} by {}",
                format::when(r.attached_at),
                who(web, &r.attached_by)
            ),
            changed: changed.contains(&r.evidence.id),
        })
        .collect();
    let next = attached.next.map(|n| {
        format!(
            "/assessments/{id}?{}#evidence-heading",
            query_with(
                &raw_uri(&view.raw_query),
                &["after", "notice", "n"],
                &[("after", &n)]
            )
        )
    });
    let may_manage = web.may(Permission::ManageAssessments);
    let may_invite = web.may(Permission::GrantAuditAccess);
    let candidates = if draft && may_manage {
        Some(candidates(state, web, &a, q, &view.raw_query, &in_scope).await?)
    } else {
        None
    };
    let Json(samples) =
        api::list_samples(State(state.clone()), reader(web), Path(id.clone())).await?;
    let invitations = if may_invite {
        let Json(found) =
            api::list_invitations(State(state.clone()), web.caller(), Path(id.clone())).await?;
        found.iter().map(|i| line_of_invitation(web, i)).collect()
    } else {
        Vec::new()
    };
    let sample = if view.sample.control.is_empty() && view.sample.size.is_empty() {
        SampleForm {
            control: a
                .scope
                .first()
                .map(|s| s.control.to_string())
                .unwrap_or_default(),
            size: "25".into(),
            seed: String::new(),
        }
    } else {
        view.sample.clone()
    };
    let invite = if view.invite.days.is_empty() && view.invite.email.is_empty() {
        InviteForm {
            email: String::new(),
            days: DEFAULT_INVITATION_DAYS.to_string(),
        }
    } else {
        view.invite.clone()
    };
    let chrome = Chrome::new(web, a.name.clone(), Section::Assessments)
        .with_notice(notice_text(q.notice.as_deref(), q.n));
    let refused = view.error.is_some();
    let page = DetailPage {
        chrome,
        a: Head {
            id: id.clone(),
            name: a.name.clone(),
            period: period_text(a.period_start, a.period_end),
            state: a.state.to_string(),
            state_class: state_class(a.state),
            draft,
            created: format!(
                "{} by {}",
                format::when(a.created_at),
                who(web, &a.created_by)
            ),
            approved: a.approved_at.map(|t| {
                format!(
                    "{} by {}",
                    format::when(t),
                    who(web, a.approved_by.as_deref().unwrap_or_default())
                )
            }),
            evidence_count: format::count(a.evidence),
        },
        controls,
        evidence,
        next,
        changes: changed_after_approval
            .iter()
            .map(|c| ChangeLine {
                attested: c.attested.to_string(),
                e: evidence_line(&c.later),
            })
            .collect(),
        candidates,
        samples: samples
            .iter()
            .rev()
            .map(|s| line_of_sample(web, s))
            .collect(),
        sample,
        invitations,
        invite,
        created: view.created.map(|c| {
            (
                c.invitation.email.clone(),
                c.secret,
                format::when(c.invitation.expires_at),
            )
        }),
        exports: exports(&id),
        may_manage: may_manage && draft,
        may_approve: web.may(Permission::ApproveAssessments) && draft,
        may_sample: web.may(Permission::DrawSamples),
        may_invite,
        error: view.error,
    };
    Ok(form_page(&page, refused))
}

fn raw_uri(raw_query: &str) -> axum::http::Uri {
    format!("/?{raw_query}")
        .parse()
        .unwrap_or_else(|_| axum::http::Uri::from_static("/"))
}

/// Evidence of one control in scope that held during the period, a page
/// at a time, as the evidence list answers it; rows already attached are
/// marked. The store checks each chosen row again when it is attached.
async fn candidates(
    state: &AppState,
    web: &Web,
    a: &AssessmentView,
    q: &DetailQuery,
    raw_query: &str,
    attached: &BTreeSet<Uuid>,
) -> Result<Candidates, Problem> {
    let scope: Vec<ControlId> = a.scope.iter().map(|s| s.control).collect();
    let control = q
        .candidates
        .as_deref()
        .and_then(|c| c.parse::<ControlId>().ok())
        .filter(|c| scope.contains(c))
        .or_else(|| scope.first().copied());
    let controls = scope
        .iter()
        .map(|c| (c.to_string(), Some(*c) == control))
        .collect();
    let Some(control) = control else {
        return Ok(Candidates {
            control: String::new(),
            controls,
            rows: Vec::new(),
            next: None,
            error: None,
        });
    };
    let answer = evidence_api::list_evidence(
        State(state.clone()),
        web.caller(),
        Params(evidence_api::EvidenceQuery {
            control: Some(control),
            check: None,
            result: None,
            subject: None,
            connection: None,
            subscription: None,
            observed_from: Some(a.period_start),
            observed_to: Some(a.period_end),
            current: Some(false),
            limit: Some(ROWS.into()),
            after: q.cafter.clone(),
        }),
    )
    .await;
    let (rows, next, error) = match answer {
        Ok(Json(page)) => (
            page.items
                .iter()
                .map(|e| (evidence_line(e), attached.contains(&e.id)))
                .collect(),
            page.next.map(|n| {
                format!(
                    "/assessments/{}?{}#attach-heading",
                    a.id,
                    query_with(
                        &raw_uri(raw_query),
                        &["cafter", "notice", "n"],
                        &[("cafter", &n)]
                    )
                )
            }),
            None,
        ),
        Err(e) => (Vec::new(), None, Some(refused(e)?)),
    };
    Ok(Candidates {
        control: control.to_string(),
        controls,
        rows,
        next,
        error,
    })
}

pub async fn detail(
    State(state): State<AppState>,
    web: Web,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: DetailQuery = query(&uri)?;
    render_detail(
        &state,
        &web,
        id,
        View {
            query: q,
            raw_query: uri.query().unwrap_or("").to_string(),
            ..Default::default()
        },
    )
    .await
}

/// Another organisation's assessment (or none) is not found before any
/// form is read, whoever asks.
async fn readable(state: &AppState, web: &Web, id: &str) -> Result<(), Problem> {
    let _ = api::get_assessment(State(state.clone()), reader(web), Path(id.to_string())).await?;
    Ok(())
}

/// The page again with `message` beside the form `at`.
async fn refusal(state: &AppState, web: &Web, id: String, at: At, message: String) -> PageResult {
    render_detail(
        state,
        web,
        id,
        View {
            error: Some((at, message)),
            ..Default::default()
        },
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct AttachForm {
    #[serde(default)]
    all_in_scope: Option<String>,
}

pub async fn attach(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, form, fields }: Form<AttachForm>,
) -> PageResult {
    readable(&state, &web, &id).await?;
    require(&web, Permission::ManageAssessments, "attaching evidence")?;
    let chosen = all_of(&fields, "evidence");
    let all_in_scope = form.all_in_scope.is_some();
    if !all_in_scope && chosen.is_empty() {
        let message = "Select the evidence rows to attach: none was selected.".to_string();
        return refusal(&state, &web, id, At::Attach, message).await;
    }
    let mut evidence = Vec::with_capacity(chosen.len());
    for raw in &chosen {
        match raw.parse::<Uuid>() {
            Ok(e) => evidence.push(e),
            Err(_) => {
                let message = format!("'{raw}' is not an evidence id.");
                return refusal(&state, &web, id, At::Attach, message).await;
            }
        }
    }
    let request = AttachRequest {
        all_in_scope,
        evidence: if all_in_scope { Vec::new() } else { evidence },
    };
    match api::attach(
        State(state.clone()),
        web.caller(),
        Path(id.clone()),
        Body(request),
    )
    .await
    {
        Ok(Json(done)) => Ok(see_other(&format!(
            "/assessments/{id}?notice=attached&n={}",
            done.changed
        ))),
        Err(e) => {
            let message = refused(e)?;
            refusal(&state, &web, id, At::Attach, message).await
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DetachForm {
    #[serde(default)]
    evidence: String,
}

pub async fn detach(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, form, .. }: Form<DetachForm>,
) -> PageResult {
    readable(&state, &web, &id).await?;
    require(&web, Permission::ManageAssessments, "detaching evidence")?;
    match api::detach(
        State(state.clone()),
        web.caller(),
        Path((id.clone(), form.evidence)),
    )
    .await
    {
        Ok(_) => Ok(see_other(&format!("/assessments/{id}?notice=detached"))),
        Err(e) => {
            let message = refused(e)?;
            refusal(&state, &web, id, At::Evidence, message).await
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Nothing {}

pub async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, .. }: Form<Nothing>,
) -> PageResult {
    readable(&state, &web, &id).await?;
    require(
        &web,
        Permission::ApproveAssessments,
        "approving assessments",
    )?;
    match api::approve(State(state.clone()), web.caller(), Path(id.clone())).await {
        Ok(_) => Ok(see_other(&format!("/assessments/{id}?notice=approved"))),
        Err(e) => {
            let message = refused(e)?;
            refusal(&state, &web, id, At::Approve, message).await
        }
    }
}

pub async fn draw(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, form, .. }: Form<SampleForm>,
) -> PageResult {
    readable(&state, &web, &id).await?;
    require(&web, Permission::DrawSamples, "drawing samples")?;
    let typed = || -> Result<SampleRequest, String> {
        let control = form
            .control
            .trim()
            .parse::<ControlId>()
            .map_err(|e| e.to_string())?;
        let size = form.size.trim().parse::<u64>().map_err(|_| {
            format!(
                "The sample's size: '{}' is not a whole number.",
                form.size.trim()
            )
        })?;
        let seed = Some(form.seed.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        Ok(SampleRequest {
            control,
            size,
            seed,
        })
    };
    let outcome = match typed() {
        Ok(request) => api::draw(
            State(state.clone()),
            web.caller(),
            Path(id.clone()),
            Body(request),
        )
        .await
        .map(|_| ())
        .map_err(refused),
        Err(message) => Err(Ok(message)),
    };
    match outcome {
        Ok(()) => Ok(see_other(&format!("/assessments/{id}?notice=sample_drawn"))),
        Err(message) => {
            let view = View {
                sample: form,
                error: Some((At::Sample, message?)),
                ..Default::default()
            };
            render_detail(&state, &web, id, view).await
        }
    }
}

pub async fn invite(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, form, .. }: Form<InviteForm>,
) -> PageResult {
    readable(&state, &web, &id).await?;
    require(&web, Permission::GrantAuditAccess, "inviting auditors")?;
    let days = match form.days.trim() {
        "" => Ok(None),
        d => d
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("The invitation's days: '{d}' is not a whole number.")),
    };
    let outcome = match days {
        Ok(days) => api::invite(
            State(state.clone()),
            web.caller(),
            Path(id.clone()),
            Body(InvitationRequest {
                email: form.email.trim().to_string(),
                days,
            }),
        )
        .await
        .map(|(_, Json(made))| made)
        .map_err(refused),
        Err(message) => Err(Ok(message)),
    };
    match outcome {
        // The secret is shown on this answer only: no redirect.
        Ok(made) => {
            let view = View {
                created: Some(made),
                ..Default::default()
            };
            render_detail(&state, &web, id, view).await
        }
        Err(message) => {
            let view = View {
                invite: form,
                error: Some((At::Invite, message?)),
                ..Default::default()
            };
            render_detail(&state, &web, id, view).await
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    invitation: String,
}

pub async fn revoke_invitation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, form, .. }: Form<RevokeForm>,
) -> PageResult {
    readable(&state, &web, &id).await?;
    require(&web, Permission::GrantAuditAccess, "revoking invitations")?;
    match api::revoke_invitation(
        State(state.clone()),
        web.caller(),
        Path((id.clone(), form.invitation)),
    )
    .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/assessments/{id}?notice=invitation_revoked"
        ))),
        Err(e) => {
            let message = refused(e)?;
            refusal(&state, &web, id, At::Invite, message).await
        }
    }
}
