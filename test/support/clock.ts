import type { Clock } from '../../src/lib/clock.js';

/** Real time plus an offset tests can move forward (token expiry, rate-limit windows). */
export class TestClock implements Clock {
  private offsetMs = 0;
  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }
  advance(seconds: number): void {
    this.offsetMs += seconds * 1000;
  }
}
