#pragma once
// What systemd is doing to the unit a process runs in, asked over D-Bus:
// on SIGTERM, a manager under systemd tells `systemctl restart` (stop, then
// start: systemd keeps the job type "restart" through the stop phase) from
// `systemctl stop`, so that a restart leaves the domains serving as SIGUSR2
// does, for the next manager to adopt.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "common/error.hpp"

namespace ng::manager {

struct SystemdJob {
  std::string unit;   // "nicguard.service" (the unit's Id)
  uint32_t id = 0;    // 0: the unit has no job
  std::string type;   // "restart", "stop", ...; "" without a job
};

// Under systemd: NOTIFY_SOCKET or INVOCATION_ID is in the environment.
bool under_systemd();

// org.freedesktop.systemd1.Manager.GetUnitByPID(pid), then the unit's Id
// and Job properties and, with a job, the job's JobType. The bus is
// DBUS_SYSTEM_BUS_ADDRESS when set; otherwise systemd's own socket
// (/run/systemd/private, what systemctl uses as root), then the system bus.
// Every step shares `limit`: past it the answer is an error, never a wait.
Result<SystemdJob> systemd_job_of(pid_t pid, std::chrono::milliseconds limit);

// A job whose stop phase must leave the domains serving.
bool is_restart_job(const std::string& type);

}  // namespace ng::manager
