//! `cloudkeep assessments`: list, create, attach evidence, approve, sample,
//! invite an auditor and export assessments through the API, as tables or
//! `--json`.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use cloudkeep_server::wire::{
    AssessmentDetail, AssessmentView, AttachResult, InvitationCreated, SampleView,
};
use serde_json::json;

use super::{Api, all_pages, api_error, call_as, form_query, output_as, table, url_escape};

#[derive(Subcommand)]
pub enum AssessmentsCommand {
    /// Assessments, newest first.
    List(Api),
    /// One assessment, with the evidence that changed after its approval.
    Show {
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// A draft assessment of an audit period and the controls in scope.
    Create {
        #[arg(long)]
        name: String,
        /// The period's start (RFC 3339, e.g. 2026-01-01T00:00:00Z).
        #[arg(long)]
        from: String,
        /// The period's end (RFC 3339).
        #[arg(long)]
        to: String,
        /// A control in scope (repeatable): CC6.1, CC6.6, CC7.1.
        #[arg(long = "control", required = true)]
        controls: Vec<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Attach evidence to a draft: everything in scope over the period
    /// (`--all`), or the rows named.
    Attach {
        id: String,
        #[arg(long, conflicts_with = "evidence")]
        all: bool,
        /// An evidence row's id (repeatable).
        #[arg(long)]
        evidence: Vec<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Approve an assessment (owners and auditors): it and its evidence
    /// can no longer change.
    Approve {
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Draw a Type II sample of a control's population (redo a draw with
    /// its --seed).
    Sample {
        id: String,
        #[arg(long)]
        control: String,
        #[arg(long)]
        size: u64,
        #[arg(long)]
        seed: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Invite an auditor to this assessment only (owners); prints the
    /// secret once.
    Invite {
        id: String,
        #[arg(long)]
        email: String,
        /// Days until it expires (30 by default).
        #[arg(long)]
        days: Option<i64>,
        #[command(flatten)]
        api: Api,
    },
    /// Export an assessment: csv, json, oscal (with --document results,
    /// plan or catalog) or zip (the audit package).
    Export {
        id: String,
        #[arg(long, default_value = "json")]
        format: String,
        #[arg(long)]
        document: Option<String>,
        /// Write here (a zip is written to assessment-{id}.zip by default;
        /// the others to standard output).
        #[arg(long)]
        output: Option<std::path::PathBuf>,
        #[command(flatten)]
        api: Api,
    },
}

fn print_assessments(list: &[AssessmentView]) {
    table(
        &[
            "ASSESSMENT",
            "NAME",
            "PERIOD",
            "CONTROLS",
            "EVIDENCE",
            "STATE",
        ],
        list.iter()
            .map(|a| {
                vec![
                    a.id.to_string(),
                    a.name.clone(),
                    format!(
                        "{} to {}",
                        a.period_start.format("%Y-%m-%d"),
                        a.period_end.format("%Y-%m-%d")
                    ),
                    a.scope
                        .iter()
                        .map(|c| c.control.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    a.evidence.to_string(),
                    match &a.approved_at {
                        Some(t) => format!("{} {}", a.state, t.format("%Y-%m-%d %H:%M")),
                        None => a.state.to_string(),
                    },
                ]
            })
            .collect(),
    );
}

/// A GET whose answer is a file, not JSON; errors as the API words them.
async fn download(api: &Api, path: &str) -> Result<Vec<u8>> {
    let url = format!("{}{path}", api.url.trim_end_matches('/'));
    let r = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&api.token)
        .send()
        .await
        .with_context(|| {
            format!("cannot reach {url}: is the server running? (--url or CLOUDKEEP_URL)")
        })?;
    let status = r.status();
    let body = r.bytes().await?.to_vec();
    if !status.is_success() {
        let value = serde_json::from_slice(&body).unwrap_or_default();
        return Err(api_error(status, &value));
    }
    Ok(body)
}

pub async fn assessments(cmd: AssessmentsCommand) -> Result<()> {
    match cmd {
        AssessmentsCommand::List(api) => {
            let list: Vec<AssessmentView> = all_pages(&api, "/api/v1/assessments").await?;
            output_as(&api, &list, |l| print_assessments(l));
        }
        AssessmentsCommand::Show { id, api } => {
            let d: AssessmentDetail = call_as(
                &api,
                reqwest::Method::GET,
                &format!("/api/v1/assessments/{}", url_escape(&id)),
                None,
            )
            .await?;
            output_as(&api, &d, |d| {
                print_assessments(std::slice::from_ref(&d.assessment));
                for c in &d.assessment.scope {
                    let checks: Vec<String> = c.checks.iter().map(|k| k.to_string()).collect();
                    println!("  {}: {}", c.control, checks.join(", "));
                }
                if d.changed_after_approval.is_empty() {
                    println!("no evidence changed after approval");
                } else {
                    println!("changed after approval:");
                    table(
                        &["ATTESTED", "LATER", "CHECK", "RESULT", "OBSERVED"],
                        d.changed_after_approval
                            .iter()
                            .map(|c| {
                                vec![
                                    c.attested.to_string(),
                                    c.later.id.to_string(),
                                    c.later.check.to_string(),
                                    c.later.result.to_string(),
                                    c.later.observed_at.format("%Y-%m-%d %H:%M").to_string(),
                                ]
                            })
                            .collect(),
                    );
                }
            });
        }
        AssessmentsCommand::Create {
            name,
            from,
            to,
            controls,
            api,
        } => {
            let a: AssessmentView = call_as(
                &api,
                reqwest::Method::POST,
                "/api/v1/assessments",
                Some(json!({"name": name, "period_start": from, "period_end": to, "controls": controls})),
            )
            .await?;
            output_as(&api, &a, |a| print_assessments(std::slice::from_ref(a)));
        }
        AssessmentsCommand::Attach {
            id,
            all,
            evidence,
            api,
        } => {
            if !all && evidence.is_empty() {
                bail!("say what to attach: --all, or --evidence ID (repeatable)");
            }
            let r: AttachResult = call_as(
                &api,
                reqwest::Method::POST,
                &format!("/api/v1/assessments/{}/evidence", url_escape(&id)),
                Some(json!({"all_in_scope": all, "evidence": evidence})),
            )
            .await?;
            output_as(&api, &r, |r| {
                println!(
                    "{} rows attached; {} in all",
                    r.changed, r.assessment.evidence
                )
            });
        }
        AssessmentsCommand::Approve { id, api } => {
            let a: AssessmentView = call_as(
                &api,
                reqwest::Method::POST,
                &format!("/api/v1/assessments/{}/approve", url_escape(&id)),
                None,
            )
            .await?;
            output_as(&api, &a, |a| print_assessments(std::slice::from_ref(a)));
        }
        AssessmentsCommand::Sample {
            id,
            control,
            size,
            seed,
            api,
        } => {
            let sample: SampleView = call_as(
                &api,
                reqwest::Method::POST,
                &format!("/api/v1/assessments/{}/samples", url_escape(&id)),
                Some(json!({"control": control, "size": size, "seed": seed})),
            )
            .await?;
            output_as(&api, &sample, |s| {
                println!(
                    "sample {} of {}: {} of {} rows, seed {} (population {})",
                    s.id, s.control, s.size, s.population, s.seed, s.population_hash
                );
                for e in &s.evidence {
                    println!("  {e}");
                }
            });
        }
        AssessmentsCommand::Invite {
            id,
            email,
            days,
            api,
        } => {
            let created: InvitationCreated = call_as(
                &api,
                reqwest::Method::POST,
                &format!("/api/v1/assessments/{}/invitations", url_escape(&id)),
                Some(json!({"email": email, "days": days})),
            )
            .await?;
            output_as(&api, &created, |c| {
                println!(
                    "invited {} until {}; send them this secret (shown once), which reads this assessment only:",
                    c.invitation.email,
                    c.invitation.expires_at.format("%Y-%m-%d %H:%M")
                );
                println!("{}", c.secret);
            });
        }
        AssessmentsCommand::Export {
            id,
            format,
            document,
            output,
            api,
        } => {
            let query = form_query(&[("format", Some(format.clone())), ("document", document)]);
            let body = download(
                &api,
                &format!("/api/v1/assessments/{}/export?{query}", url_escape(&id)),
            )
            .await?;
            let output =
                output.or_else(|| (format == "zip").then(|| format!("assessment-{id}.zip").into()));
            match output {
                Some(path) => {
                    std::fs::write(&path, &body)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {} ({} bytes)", path.display(), body.len());
                }
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&body)?;
                }
            }
        }
    }
    Ok(())
}
