"""The host-wide CPU tier under tornado-run: one broker process (started by the master) runs
every process-kind pool; web workers reach it through `TierPool`, one connection each."""
