#pragma once
// Carrier watching: one rtnetlink socket subscribed to link events in one
// network namespace, for one link. The manager polls fd() with its other
// descriptors; a cable pulled or a NIC reset shows as carrier loss at once.
#include <memory>
#include <string>

#include "common/error.hpp"

namespace ng::netlink {

class LinkWatcher {
 public:
  // ns_fd < 0: the caller's namespace.
  static Result<LinkWatcher> open(int ns_fd, const std::string& link);
  ~LinkWatcher();
  LinkWatcher(LinkWatcher&&) noexcept;
  LinkWatcher& operator=(LinkWatcher&&) noexcept;

  int fd() const;
  // The link has carrier and is administratively up; as of the last drain().
  bool carrier() const;
  // Reads every pending notification; returns the carrier state after them.
  Result<bool> drain();

 struct Impl;  // public for the event parser in link_watch.cpp

 private:
  explicit LinkWatcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ng::netlink
