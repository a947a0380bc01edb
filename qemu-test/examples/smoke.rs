use qemu_test::Machine;
use serde_json::json;
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t = std::time::Instant::now();
    let mut vm = Machine::builder("qemu-system-x86_64").args(["-S"]).build();
    vm.launch()?;
    println!("launched {:?}", t.elapsed());
    println!("{}", vm.command("query-status", json!({}))?);
    println!("{:?}", vm.command("nonexistent", json!({})).unwrap_err());
    let t2 = std::time::Instant::now();
    for _ in 0..100 { vm.command("query-status", json!({}))?; }
    println!("100 rt {:?}", t2.elapsed());
    vm.shutdown()?;
    println!("exit {:?} total {:?}", vm.exit_code(), t.elapsed());
    println!("{:?}", vm.get_qmp_events(false)?);
    let mut bad = Machine::builder("qemu-system-x86_64").args(["-bogus"]).build();
    println!("{:?}", bad.launch().unwrap_err());
    Ok(())
}
