//! `netwait`: call-centre events in, the contract's figures out.

// Printing goes through `stdout` (a closed pipe must not panic): these shadow the std
// macros in every module below.
#[allow(unused_macros)] // no command prints a partial line today; one that does is covered
macro_rules! print {
    ($($arg:tt)*) => { $crate::stdout::print(format_args!($($arg)*), false) };
}
macro_rules! println {
    () => { $crate::stdout::print(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::stdout::print(format_args!($($arg)*), true) };
}
#[allow(unused_macros)] // the progress bar draws through indicatif; kept for any partial line
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::stdout::eprint(format_args!($($arg)*)) };
}
macro_rules! eprintln {
    () => { $crate::stdout::eprint(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::stdout::eprint(format_args!("{}\n", format_args!($($arg)*))) };
}

mod cli;
mod huge_pages;
mod stdout;

#[global_allocator]
static ALLOC: huge_pages::HugePageAlloc = huge_pages::HugePageAlloc;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::from_command_line();
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(args.log_filter());
    if args.json_logs() {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let result = cli::run(args);
    match result {
        Ok(()) if !stdout::failed() => std::process::ExitCode::SUCCESS,
        Ok(()) => std::process::ExitCode::FAILURE,
        Err(e) if e.is::<cli::Interrupted>() => {
            eprintln!("netwait: {e}");
            std::process::ExitCode::from(cli::INTERRUPTED_STATUS)
        }
        Err(e) => {
            eprintln!("netwait: error: {}", cli::error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
