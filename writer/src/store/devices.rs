//! The paired devices of a job's first slice, as `device` rows: one per device per
//! participant-local day, replaced by a later sync the same day. Upserted with a `WHERE` that
//! compares every value column, so a sync that finds nothing new writes nothing.

use fitlink_shared::execute;
use fitlink_shared::families::DeviceSnapshot;

use super::{CommandResult, Tx};

const UPSERT_DEVICE: &str = "INSERT INTO device (participant_id, device_id, device_date, \
     battery, battery_level, device_version, device_type, last_sync_time, provider, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (participant_id, device_id, device_date) DO UPDATE SET \
     battery = excluded.battery, battery_level = excluded.battery_level, \
     device_version = excluded.device_version, device_type = excluded.device_type, \
     last_sync_time = excluded.last_sync_time, provider = excluded.provider, \
     updated_at = excluded.updated_at \
     WHERE device.battery IS DISTINCT FROM excluded.battery \
     OR device.battery_level IS DISTINCT FROM excluded.battery_level \
     OR device.device_version IS DISTINCT FROM excluded.device_version \
     OR device.device_type IS DISTINCT FROM excluded.device_type \
     OR device.last_sync_time IS DISTINCT FROM excluded.last_sync_time \
     OR device.provider IS DISTINCT FROM excluded.provider";

impl Tx<'_> {
    /// Rows written (0 for a snapshot equal to the stored one).
    pub(super) async fn upsert_devices(
        &mut self,
        participant_id: &str,
        provider: &str,
        snapshot: &DeviceSnapshot,
    ) -> CommandResult<u64> {
        let mut written = 0;
        for device in &snapshot.devices {
            written += execute!(
                self.conn.exec(),
                sqlx::query(UPSERT_DEVICE)
                    .bind(participant_id)
                    .bind(&device.device_id)
                    .bind(snapshot.date)
                    .bind(&device.battery)
                    .bind(device.battery_level)
                    .bind(&device.device_version)
                    .bind(&device.device_type)
                    .bind(device.last_sync_time)
                    .bind(provider)
                    .bind(self.now)
            )?;
        }
        Ok(written)
    }
}
