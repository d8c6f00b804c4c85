"""Writes a drill population: one plan, N subscribers billed on the 1st (every fifth one in
English), and for each a plan fee and a voice charge in 2026-10.
Usage: python3 population.py OUT_DIR N ID_PREFIX MSISDN_PREFIX (3 digits, e.g. 139)"""
import sys

out, n, prefix, msisdn = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(f"{out}/plans.csv", "w") as plans:
    plans.write("plan_id,name,monthly_fee_fen,voice_minutes,data_mb,sms_count\nP58,畅享58,5800,300,20480,100\n")
with open(f"{out}/subscribers.csv", "w") as s, open(f"{out}/usage.csv", "w") as u:
    s.write("subscriber_id,msisdn,plan_id,language,billing_day\n")
    u.write("record_id,subscriber_id,occurred_at,category,quantity,amount_fen,service_code,description\n")
    for i in range(n):
        subscriber = f"{prefix}{i:08d}"
        s.write(f"{subscriber},{msisdn}{i:08d},P58,{'en' if i % 5 == 0 else 'zh'},1\n")
        u.write(f"{prefix}F{i:08d},{subscriber},2026-10-01T00:10:00+08:00,plan_fee,1,5800,,月功能费\n")
        u.write(f"{prefix}V{i:08d},{subscriber},2026-10-05T10:00:00+08:00,voice,12,120,,\n")
