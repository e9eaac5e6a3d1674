//! `netwait watch`: the live queue of a server in the terminal (`Live.WatchQueue`), one
//! screen updated in place with the alerts highlighted; not on a terminal (or with
//! `--plain`), one line per update.

use anyhow::Context;
use netwait_proto::v1::live_client::LiveClient;
use netwait_proto::v1::{LiveAlert, LiveLine, QueueUpdate, WatchQueueRequest};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, Paragraph, Row, Table};
use std::io::IsTerminal;
use std::time::Duration;

pub fn run(
    server: &str,
    client: &super::ClientArgs,
    line: Option<String>,
    plain: bool,
) -> anyhow::Result<()> {
    let rt = super::runtime()?;
    rt.block_on(async {
        let channel = super::connect(server, client).await?;
        let mut stream = LiveClient::new(channel)
            .watch_queue(WatchQueueRequest { line })
            .await
            .map_err(|s| anyhow::anyhow!("{} ({:?})", s.message(), s.code()))?
            .into_inner();
        if plain || !std::io::stdout().is_terminal() {
            use std::io::Write;
            let mut out = std::io::stdout();
            while let Some(u) = stream.message().await.context("watching")? {
                writeln!(out, "{}", plain_line(&u))?;
                out.flush()?;
            }
            return Ok(());
        }
        screen(&mut stream).await
    })
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |s| format!("{:.1}%", s * 100.0))
}

fn wait(w: Option<f64>) -> String {
    w.map_or_else(|| "-".to_owned(), |s| format!("{}s", s.floor()))
}

fn alert_text(a: &LiveAlert) -> String {
    format!("{} {} {}: {}", a.id, a.severity, a.rule, a.message)
}

/// One update on one line (tests and pipes read this).
pub fn plain_line(u: &QueueUpdate) -> String {
    let mut out = format!("seq {} missed {} at {}", u.seq, u.missed, u.at_ms);
    for l in &u.lines {
        let w = l.last_15m.unwrap_or_default();
        out.push_str(&format!(
            " | {} waiting {} longest {} 15m {}/{}/{}/{} today {} mtd {}",
            l.line,
            l.waiting,
            wait(l.longest_wait_s),
            w.offered,
            w.answered,
            w.abandoned,
            w.overflow,
            pct(l.today.and_then(|s| s.sla)),
            pct(l.month_to_date.and_then(|s| s.sla)),
        ));
    }
    let o = u.operators.unwrap_or_default();
    out.push_str(&format!(
        " | operators {}/{} busy {} paused {}",
        o.logged_in, o.planned, o.busy, o.paused
    ));
    for a in &u.open_alerts {
        out.push_str(&format!(" | ALERT {}", alert_text(a)));
    }
    out
}

/// Restores the terminal however the screen ends.
struct Screen(ratatui::DefaultTerminal);

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

async fn screen(stream: &mut tonic::Streaming<QueueUpdate>) -> anyhow::Result<()> {
    let mut screen = Screen(ratatui::try_init().context("opening the terminal")?);
    // Keys are read on a thread of their own: q, Esc or Ctrl-C quit.
    let (quit_tx, mut quit) = tokio::sync::mpsc::channel::<()>(1);
    std::thread::spawn(move || {
        loop {
            if quit_tx.is_closed() {
                return;
            }
            if !event::poll(Duration::from_millis(200)).unwrap_or(false) {
                continue;
            }
            if let Ok(Event::Key(k)) = event::read() {
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                    let _ = quit_tx.blocking_send(());
                    return;
                }
            }
        }
    });
    loop {
        tokio::select! {
            _ = quit.recv() => return Ok(()),
            next = stream.message() => match next.context("watching")? {
                Some(u) => {
                    screen.0.draw(|f| draw(f, &u)).context("drawing")?;
                }
                None => return Ok(()),
            },
        }
    }
}

fn line_row(l: &LiveLine, threshold: f64, long_wait: f64) -> Row<'static> {
    let w = l.last_15m.unwrap_or_default();
    let colour = match l.longest_wait_s {
        Some(s) if s >= threshold => Color::Red,
        Some(s) if s >= long_wait => Color::Yellow,
        _ => Color::Green,
    };
    Row::new(vec![
        Span::raw(l.line.clone()),
        Span::raw(l.waiting.to_string()),
        Span::styled(wait(l.longest_wait_s), Style::new().fg(colour)),
        Span::raw(format!(
            "{}/{}/{}/{}",
            w.offered, w.answered, w.abandoned, w.overflow
        )),
        Span::raw(pct(l.today.and_then(|s| s.sla))),
        Span::raw(pct(l.month_to_date.and_then(|s| s.sla))),
    ])
}

fn draw(f: &mut ratatui::Frame<'_>, u: &QueueUpdate) {
    let [head, table, alerts] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(4),
        Constraint::Min(3),
    ])
    .areas(f.area());
    let o = u.operators.unwrap_or_default();
    let short = o.logged_in < o.planned;
    let ops_style = Style::new().fg(if short { Color::Yellow } else { Color::Green });
    let header = Line::from(vec![
        Span::raw(format!("update {} (missed {})  ", u.seq, u.missed)),
        Span::styled(
            format!("operators {}/{} planned", o.logged_in, o.planned),
            ops_style,
        ),
        Span::raw(format!(
            "  busy {} paused {}  {}  target {}  (q quits)",
            o.busy,
            o.paused,
            if u.in_service { "in service" } else { "closed" },
            pct(Some(u.target))
        )),
    ]);
    f.render_widget(
        Paragraph::new(header).block(Block::bordered().title("netwait live")),
        head,
    );
    let long_wait = u.long_wait_s;
    let rows: Vec<Row<'_>> = u
        .lines
        .iter()
        .map(|l| line_row(l, u.threshold_s, long_wait))
        .collect();
    let widths = [
        Constraint::Length(14),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(16),
        Constraint::Length(9),
        Constraint::Length(9),
    ];
    let bold = Style::new().add_modifier(Modifier::BOLD);
    f.render_widget(
        Table::new(rows, widths)
            .header(
                Row::new([
                    "line",
                    "waiting",
                    "longest",
                    "15m o/a/ab/ov",
                    "today",
                    "MTD",
                ])
                .style(bold),
            )
            .block(Block::bordered().title("queues")),
        table,
    );
    let items: Vec<ListItem<'_>> = if u.open_alerts.is_empty() {
        vec![ListItem::new("none")]
    } else {
        u.open_alerts
            .iter()
            .map(|a| {
                let colour = if a.severity == "critical" {
                    Color::Red
                } else {
                    Color::Yellow
                };
                ListItem::new(alert_text(a))
                    .style(Style::new().fg(colour).add_modifier(Modifier::BOLD))
            })
            .collect()
    };
    f.render_widget(
        List::new(items).block(Block::bordered().title("open alerts")),
        alerts,
    );
}
