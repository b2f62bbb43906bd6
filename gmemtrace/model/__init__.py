"""What the event stream says about guest_memfd memory: shareability, residency, counts, rates."""
