"""Dictionaries the twin draws from: MIMIC-IV itemids, ICD codes and their titles.

Itemids are MIMIC-IV's real MetaVision / lab itemids of the benchmark's 17 variables
(docs/synthetic-data.md lists them) plus a few irrelevant items so extraction must filter.
ICD codes per phenotype are taken from the HCUP CCS (ICD-9-CM) and MedFuse GEM (ICD-10-CM)
lists that data_prep/resources/phenotypes.yaml is built from, so they map to the 25 groups.
"""

from __future__ import annotations

# --- chartevents items: itemid -> (label, abbreviation, category, unit, param_type) ----------
CHART_ITEMS: dict[int, tuple[str, str, str, str, str]] = {
    220045: ("Heart Rate", "HR", "Routine Vital Signs", "bpm", "Numeric"),
    220050: ("Arterial Blood Pressure systolic", "ABPs", "Routine Vital Signs", "mmHg", "Numeric"),
    220051: ("Arterial Blood Pressure diastolic", "ABPd", "Routine Vital Signs", "mmHg", "Numeric"),
    220052: ("Arterial Blood Pressure mean", "ABPm", "Routine Vital Signs", "mmHg", "Numeric"),
    220179: ("Non Invasive Blood Pressure systolic", "NBPs", "Routine Vital Signs", "mmHg", "Numeric"),
    220180: ("Non Invasive Blood Pressure diastolic", "NBPd", "Routine Vital Signs", "mmHg", "Numeric"),
    220181: ("Non Invasive Blood Pressure mean", "NBPm", "Routine Vital Signs", "mmHg", "Numeric"),
    220210: ("Respiratory Rate", "RR", "Respiratory", "insp/min", "Numeric"),
    224690: ("Respiratory Rate (Total)", "RR (Total)", "Respiratory", "insp/min", "Numeric"),
    220277: ("O2 saturation pulseoxymetry", "SpO2", "Respiratory", "%", "Numeric"),
    223761: ("Temperature Fahrenheit", "Temperature F", "Routine Vital Signs", "°F", "Numeric"),
    223762: ("Temperature Celsius", "Temperature C", "Routine Vital Signs", "°C", "Numeric"),
    223835: ("Inspired O2 Fraction", "FiO2", "Respiratory", "", "Numeric"),
    220739: ("GCS - Eye Opening", "GCS - Eye Opening", "Neurological", "", "Text"),
    223900: ("GCS - Verbal Response", "GCS - Verbal Response", "Neurological", "", "Text"),
    223901: ("GCS - Motor Response", "GCS - Motor Response", "Neurological", "", "Text"),
    220621: ("Glucose (serum)", "Glucose (serum)", "Labs", "mg/dL", "Numeric"),
    225664: ("Glucose finger stick (range 70-100)", "Glucose FS (range 70 -100)", "Routine Vital Signs", "mg/dL", "Numeric"),
    226537: ("Glucose (whole blood)", "Glucose (whole blood)", "Labs", "mg/dL", "Numeric"),
    224639: ("Daily Weight", "Daily Weight", "General", "kg", "Numeric"),
    226512: ("Admission Weight (Kg)", "Admit Wt", "General", "kg", "Numeric"),
    226531: ("Admission Weight (lbs.)", "Admit Wt (lbs)", "General", "lb", "Numeric"),
    226730: ("Height (cm)", "Height (cm)", "General", "cm", "Numeric"),
    226707: ("Height", "Height", "General", "Inch", "Numeric"),
    220274: ("PH (Venous)", "PH (Venous)", "Labs", "units", "Numeric"),
    223830: ("PH (Arterial)", "PH (Arterial)", "Labs", "units", "Numeric"),
    223951: ("Capillary Refill R", "Capillary Refill R", "Skin - Assessment", "", "Text"),
    224308: ("Capillary Refill L", "Capillary Refill L", "Skin - Assessment", "", "Text"),
    # irrelevant to the 17 variables: extraction must filter them out
    220048: ("Heart Rhythm", "Heart Rhythm", "Routine Vital Signs", "", "Text"),
    224641: ("Alarms On", "Alarms On", "Alarms", "", "Text"),
    226732: ("O2 Delivery Device(s)", "O2 Delivery Device(s)", "Respiratory", "", "Text"),
    220339: ("PEEP set", "PEEP set", "Respiratory", "cmH2O", "Numeric"),
    227969: ("Safety Measures", "Safety Measures", "Safety", "", "Text"),
    # alarm limits: numeric, charted often on real units; only with data.synthetic.other_chart_items > 0
    220046: ("Heart rate Alarm - High", "HR Alarm - High", "Alarms", "bpm", "Numeric"),
    220047: ("Heart Rate Alarm - Low", "HR Alarm - Low", "Alarms", "bpm", "Numeric"),
    223769: ("O2 Saturation Pulseoxymetry Alarm - High", "SpO2 Alarm - High", "Alarms", "%", "Numeric"),
    223770: ("O2 Saturation Pulseoxymetry Alarm - Low", "SpO2 Alarm - Low", "Alarms", "%", "Numeric"),
}

OUTPUT_ITEMS: dict[int, tuple[str, str, str, str, str]] = {
    226559: ("Foley", "Foley", "Output", "ml", "Numeric"),
    226560: ("Void", "Void", "Output", "ml", "Numeric"),
}

# --- labevents items: itemid -> (label, fluid, category, unit, decimals, ref_low, ref_high) ----
LAB_ITEMS: dict[int, tuple[str, str, str, str, int, float, float]] = {
    50931: ("Glucose", "Blood", "Chemistry", "mg/dL", 0, 70.0, 100.0),
    50809: ("Glucose", "Blood", "Blood Gas", "mg/dL", 0, 70.0, 105.0),
    50820: ("pH", "Blood", "Blood Gas", "units", 2, 7.35, 7.45),
    50817: ("Oxygen Saturation", "Blood", "Blood Gas", "%", 0, 95.0, 100.0),
    50816: ("Oxygen", "Blood", "Blood Gas", "%", 0, float("nan"), float("nan")),
    # irrelevant to the 17 variables
    50912: ("Creatinine", "Blood", "Chemistry", "mg/dL", 1, 0.5, 1.2),
    50983: ("Sodium", "Blood", "Chemistry", "mEq/L", 0, 133.0, 145.0),
    51222: ("Hemoglobin", "Blood", "Hematology", "g/dL", 2, 13.7, 17.5),
    51301: ("White Blood Cells", "Blood", "Hematology", "K/uL", 1, 4.0, 11.0),
}

# --- GCS and capillary refill text values (mimic3-benchmarks discretizer strings) -------------
# index = valuenum - 1; the numbered strings are the default, the plain MetaVision strings
# (also in the discretizer's set) appear in a share of stays.
GCS_EYE = ("1 No Response", "2 To pain", "3 To speech", "4 Spontaneously")
GCS_EYE_PLAIN = ("None", "To Pain", "To Speech", "Spontaneously")
GCS_MOTOR = ("1 No Response", "2 Abnorm extensn", "3 Abnorm flexion", "4 Flex-withdraws",
             "5 Localizes Pain", "6 Obeys Commands")
GCS_MOTOR_PLAIN = ("No response", "Abnormal extension", "Abnormal Flexion", "Flex-withdraws",
                   "Localizes Pain", "Obeys Commands")
GCS_VERBAL = ("1 No Response", "2 Incomp sounds", "3 Inapprop words", "4 Confused", "5 Oriented")
GCS_VERBAL_PLAIN = ("No Response", "Incomprehensible sounds", "Inappropriate Words", "Confused",
                    "Oriented")
GCS_VERBAL_INTUBATED = "No Response-ETT"
CAPILLARY_REFILL = ("Normal <3 secs", "Abnormal >3 secs")

# --- ICD codes per phenotype: a handful of common ones from each group's list ----------------
PHENOTYPE_CODES: dict[str, dict[int, tuple[str, ...]]] = {
    "acute_and_unspecified_renal_failure": {9: ("5849", "5845", "586"), 10: ("N179", "N170", "N19")},
    "acute_cerebrovascular_disease": {9: ("43491", "431", "436"), 10: ("I6350", "I619", "I609")},
    "acute_myocardial_infarction": {9: ("41071", "41041", "41011"), 10: ("I214", "I2119", "I2109")},
    "cardiac_dysrhythmias": {9: ("42731", "4271", "42789"), 10: ("I4891", "I472", "I499")},
    "chronic_kidney_disease": {9: ("5859", "5853", "V451"), 10: ("N189", "N183", "Z992")},
    "chronic_obstructive_pulmonary_disease_and_bronchiectasis": {9: ("496", "49121", "4928"),
                                                                 10: ("J449", "J441", "J439")},
    "complications_of_surgical_procedures_or_medical_care": {9: ("99859", "9971", "99702"),
                                                             10: ("T8130XA", "I9581", "J9589")},
    "conduction_disorders": {9: ("4263", "4260", "V4501"), 10: ("I447", "I442", "Z950")},
    "congestive_heart_failure_nonhypertensive": {9: ("4280", "42823", "42833"),
                                                 10: ("I509", "I5023", "I5033")},
    "coronary_atherosclerosis_and_other_heart_disease": {9: ("41401", "412", "V4581"),
                                                         10: ("I2510", "I252", "Z951")},
    "diabetes_mellitus_with_complications": {9: ("25040", "25060", "25013"),
                                             10: ("E1129", "E1165", "E1140")},
    "diabetes_mellitus_without_complication": {9: ("25000", "25001", "7902"), 10: ("E119", "E109", "R7309")},
    "disorders_of_lipid_metabolism": {9: ("2724", "2720", "2722"), 10: ("E785", "E781", "E782")},
    "essential_hypertension": {9: ("4019", "4011"), 10: ("I10", "I169")},
    "fluid_and_electrolyte_disorders": {9: ("2761", "2762", "2767"), 10: ("E871", "E872", "E875")},
    "gastrointestinal_hemorrhage": {9: ("5789", "5780", "53100"), 10: ("K922", "K920", "K250")},
    "hypertension_with_complications_and_secondary_hypertension": {9: ("40390", "40391", "40291"),
                                                                   10: ("I129", "I130", "I110")},
    "other_liver_diseases": {9: ("5715", "5723", "5728"), 10: ("K7469", "K766", "K7290")},
    "other_lower_respiratory_disease": {9: ("7931", "78605", "5184"), 10: ("R911", "R0602", "J849")},
    "other_upper_respiratory_disease": {9: ("5193", "4781", "V440"), 10: ("J399", "J3489", "Z930")},
    "pleurisy_pneumothorax_pulmonary_collapse": {9: ("5119", "5180", "51189"), 10: ("J918", "J9819", "J939")},
    "pneumonia": {9: ("486", "481", "4829"), 10: ("J189", "J181", "J159")},
    "respiratory_failure": {9: ("51881", "51882", "51884"), 10: ("J9600", "J9690", "J9620")},
    "septicemia": {9: ("0389", "99591", "99592"), 10: ("A419", "R6520", "A4151")},
    "shock": {9: ("78552", "78551", "78559"), 10: ("R6521", "R570", "R578")},
}

# Codes in no phenotype group (anaemia, depression, GERD, tobacco, obesity, ...): every admission
# gets some, as real ones do, and they must map to nothing.
IRRELEVANT_CODES: dict[int, tuple[str, ...]] = {
    9: ("2859", "311", "53081", "3051", "V1582", "2449", "V5861", "V707", "2780", "3004"),
    10: ("D649", "F329", "K219", "Z87891", "E039", "Z7901", "E669", "F419", "G4733", "Z23"),
}

IRRELEVANT_TITLES: dict[str, str] = {
    "2859": "Anemia, unspecified", "311": "Depressive disorder, not elsewhere classified",
    "53081": "Esophageal reflux", "3051": "Tobacco use disorder",
    "V1582": "Personal history of tobacco use", "2449": "Unspecified acquired hypothyroidism",
    "V5861": "Long-term (current) use of anticoagulants",
    "V707": "Examination of participant in clinical trial", "2780": "Overweight and obesity",
    "3004": "Dysthymic disorder", "D649": "Anemia, unspecified",
    "F329": "Major depressive disorder, single episode, unspecified",
    "K219": "Gastro-esophageal reflux disease without esophagitis",
    "Z87891": "Personal history of nicotine dependence", "E039": "Hypothyroidism, unspecified",
    "Z7901": "Long term (current) use of anticoagulants", "E669": "Obesity, unspecified",
    "F419": "Anxiety disorder, unspecified", "G4733": "Obstructive sleep apnea (adult) (pediatric)",
    "Z23": "Encounter for immunization",
}

PHENOTYPE_TITLES: dict[str, str] = {
    "acute_and_unspecified_renal_failure": "Acute kidney failure",
    "acute_cerebrovascular_disease": "Acute cerebrovascular event",
    "acute_myocardial_infarction": "Acute myocardial infarction",
    "cardiac_dysrhythmias": "Cardiac dysrhythmia",
    "chronic_kidney_disease": "Chronic kidney disease",
    "chronic_obstructive_pulmonary_disease_and_bronchiectasis": "Chronic obstructive pulmonary disease",
    "complications_of_surgical_procedures_or_medical_care": "Complication of medical care",
    "conduction_disorders": "Conduction disorder",
    "congestive_heart_failure_nonhypertensive": "Congestive heart failure",
    "coronary_atherosclerosis_and_other_heart_disease": "Coronary atherosclerosis",
    "diabetes_mellitus_with_complications": "Diabetes mellitus with complication",
    "diabetes_mellitus_without_complication": "Diabetes mellitus without complication",
    "disorders_of_lipid_metabolism": "Hyperlipidemia",
    "essential_hypertension": "Essential hypertension",
    "fluid_and_electrolyte_disorders": "Fluid or electrolyte disorder",
    "gastrointestinal_hemorrhage": "Gastrointestinal hemorrhage",
    "hypertension_with_complications_and_secondary_hypertension": "Hypertensive disease with complication",
    "other_liver_diseases": "Liver disease",
    "other_lower_respiratory_disease": "Lower respiratory finding",
    "other_upper_respiratory_disease": "Upper respiratory disorder",
    "pleurisy_pneumothorax_pulmonary_collapse": "Pleural effusion, pneumothorax or collapse",
    "pneumonia": "Pneumonia",
    "respiratory_failure": "Respiratory failure",
    "septicemia": "Sepsis",
    "shock": "Shock",
}


def icd_dictionary() -> list[tuple[str, int, str]]:
    """(icd_code, icd_version, long_title) for every code the twin can emit, in a fixed order."""
    rows = []
    for phenotype, by_version in PHENOTYPE_CODES.items():
        for version, codes in by_version.items():
            rows += [(code, version, f"{PHENOTYPE_TITLES[phenotype]} (code {code})") for code in codes]
    for version, codes in IRRELEVANT_CODES.items():
        rows += [(code, version, IRRELEVANT_TITLES[code]) for code in codes]
    return sorted(set(rows), key=lambda row: (row[1], row[0]))
