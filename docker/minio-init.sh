#!/bin/sh
# One-shot set-up of the backup bucket (the minio-init service; root credentials stay here):
#   - the bucket, with Object Lock: every backup object is kept unchanged for BACKUP_LOCK_DAYS
#     (GOVERNANCE: nobody without the bypass permission, the sapnhap user included, can delete or
#     overwrite a locked version; a modified file is a new version beside the original)
#   - a user limited to that bucket: read, write, list, and delete what retention expires (a
#     locked version cannot be deleted: no bypass permission); no other bucket, no admin, and no
#     change to the Object Lock settings
set -eu
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing --with-lock "local/$BACKUP_BUCKET"
mc retention set --default GOVERNANCE "${BACKUP_LOCK_DAYS}d" "local/$BACKUP_BUCKET"
cat > /tmp/sapnhap-backups-policy.json <<POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation", "s3:GetBucketVersioning",
                 "s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration", "s3:GetLifecycleConfiguration",
                 "s3:PutLifecycleConfiguration", "s3:GetBucketObjectLockConfiguration"],
      "Resource": ["arn:aws:s3:::$BACKUP_BUCKET"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:GetObjectRetention",
                 "s3:DeleteObject", "s3:DeleteObjectVersion"],
      "Resource": ["arn:aws:s3:::$BACKUP_BUCKET/*"]
    }
  ]
}
POLICY
mc admin user add local "$MINIO_BACKUP_USER" "$MINIO_BACKUP_PASSWORD"
mc admin policy create local sapnhap-backups /tmp/sapnhap-backups-policy.json
mc admin policy attach local sapnhap-backups --user "$MINIO_BACKUP_USER" || true  # already attached on a re-run
