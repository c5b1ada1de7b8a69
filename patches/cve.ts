/** MITRE's CVE id form: CVE-YYYY-NNNN, four or more digits in the sequence number. One definition for the packer, the manifest and the trigger. */
export const CVE_RE = /^CVE-\d{4}-\d{4,19}$/;
