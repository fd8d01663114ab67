#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "driver/driver.hpp"

void ng::cli::add_driver_command(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<ng::driver::DriverOptions>();
  auto* cmd = app.add_subcommand("driver", "Run one driver domain (started by the manager)");
  cmd->add_option("--name", opt->name, "Domain name")->required();
  cmd->add_option("--netns", opt->netns, "Network namespace holding the NIC (path)");
  cmd->add_option("--nic", opt->nic, "NIC interface inside that namespace")->required();
  cmd->add_option("--socket", opt->socket, "Unix socket frontends connect to")->required();
  cmd->add_option("--stats", opt->stats, "Counters file")->required();
  cmd->add_option("--memory-limit-mb", opt->memory_limit_mb, "Address-space limit")
      ->capture_default_str();
  cmd->add_option("--heartbeat-us", opt->heartbeat_us, "Heartbeat period while idle")
      ->capture_default_str();
  cmd->add_option("--spin-us", opt->spin_us, "Busy-poll time before sleeping")
      ->capture_default_str();
  cmd->add_option("--path-probe-us", opt->path_probe_us,
                  "A path probe to the pair's other driver domain this often; 0: none")
      ->capture_default_str();
  cmd->add_option("--pair-id", opt->pair_id, "Id of the pair in its path probes");
  cmd->add_option("--inject", opt->inject,
                  "Fault-injection file the manager arms (inert until armed)");
  cmd->add_option("--serve-nice", opt->serve.nice,
                  "Nice value to take once serving (the manager starts domains lower)");
  cmd->add_option("--serve-realtime", opt->serve.realtime,
                  "SCHED_FIFO priority to take once serving; 0: normal scheduling")
      ->check(CLI::Range(0, 99));
  cmd->add_flag("--vm", opt->vm.enabled,
                 "A driver VM drives the NIC: QEMU runs the NIC's own kernel driver in a guest");
  cmd->add_option("--vm-image-dir", opt->vm.image_dir, "Guest vmlinuz and initramfs.cpio (default: guest/ beside the binary)");
  cmd->add_option("--vm-nic-model", opt->vm.nic_model, "NIC QEMU emulates on the domain's NIC")
      ->capture_default_str();
  cmd->add_option("--vm-memory-mb", opt->vm.memory_mb, "Guest memory")->capture_default_str();
  cmd->add_option("--vm-accel", opt->vm.accel, "tcg or kvm")->check(CLI::IsMember({"tcg", "kvm"}))
      ->capture_default_str();
  cmd->add_option("--vm-run-dir", opt->vm.run_dir, "Where the VM's QMP and gdbstub sockets and console go");
  cmd->add_option("--vm-boot-timeout-ms", opt->vm.boot_timeout_ms, "QEMU start to the guest's first answer")
      ->capture_default_str();
  cmd->add_option("--uid", opt->uid,
                  "Unprivileged uid the sandbox takes, in a user namespace of its own with an empty "
                  "root; 0: stay root (not with --vm)");
  cmd->add_flag("!--no-sandbox", opt->sandbox, "Skip seccomp/capability/memory sandboxing");
  cmd->callback([opt, &exit_code] { exit_code = ng::driver::run_driver(*opt); });
}
