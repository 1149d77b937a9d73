//! `ccproxy ca [--pem]`: where the CA is and how to trust it, or the PEM.

use crate::cli::CaArgs;
use crate::config::Config;
use crate::proxy::ca::CertAuthority;

/// `ccproxy ca`.
pub fn ca(cfg: &Config, args: &CaArgs) -> anyhow::Result<i32> {
    let ca = CertAuthority::load_or_create(cfg)?;
    if args.pem {
        print!("{}", ca.cert_pem());
        return Ok(0);
    }
    let trust = ca.trust();
    println!("CA certificate: {}", trust.files.cert.display());
    println!(
        "CA bundle (system roots + this CA): {}",
        trust.files.bundle.display()
    );
    println!();
    println!("Trust it system-wide:");
    print_aligned(&trust.system);
    println!("Or per process:");
    print_aligned(&trust.per_process);
    println!("Or let ccproxy set all of that for one command: ccproxy run -- CMD ARGS");
    println!("Print the certificate itself with: ccproxy ca --pem");
    Ok(0)
}

/// `  label:  command`, the commands in one column.
fn print_aligned(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(l, _)| l.len() + 1).max().unwrap_or(0) + 1;
    for (label, command) in rows {
        println!("  {:<width$}{command}", format!("{label}:"));
    }
}
