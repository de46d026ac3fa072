"""The de-identification profile as data: DICOM PS3.15 Annex E, Table E.1-1.

Each attribute (by DICOM keyword) carries the action code of the Basic Application Level
Confidentiality Profile column, spelled as in the standard:

- ``X`` remove; ``Z`` replace with a zero-length value; ``D`` replace with a non-zero-length
  dummy value; ``K`` keep; ``C`` clean; ``U`` replace the UID with a consistent new one.
- Compound codes leave the choice to the IOD: ``X/Z`` is "X unless Z is required for the IOD
  (Type 2)", ``X/D`` and ``Z/D`` fall back to D where the attribute is Type 1, and ``X/Z/U*``
  (referencing sequences) keeps the sequence with its UIDs replaced.

Medsight does not carry per-IOD type tables, so each compound code resolves to its weakest
option that is conformant in *every* IOD (``X/Z`` -> Z, ``X/D``/``Z/D``/``X/Z/D`` -> D,
``X/Z/U*`` -> U). Privacy is the same either way: Z and D both drop the original value.

Attributes absent from the table are kept, except: private tags (removed unless allow-listed),
curve (50xx) groups and overlay planes (60xx; Overlay Data is X and a plane without its data
is invalid), and any other date (DA/DT), which the date policy handles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from medsight.errors import MedsightError


class Action(str, Enum):
    """What happens to an attribute; values are the standard's own letters."""

    REMOVE = "X"
    EMPTY = "Z"
    DUMMY = "D"
    CLEAN = "C"
    KEEP = "K"
    UID = "U"


# Compound code -> the option used (see the module docstring for why).
_COMPOUND = {
    "X/Z": Action.EMPTY,
    "X/D": Action.DUMMY,
    "Z/D": Action.DUMMY,
    "X/Z/D": Action.DUMMY,
    "X/Z/U*": Action.UID,
}

# Table E.1-1, Basic Profile column, grouped by code (keywords as in pydicom's dictionary).
_BASIC_TABLE: dict[str, str] = {
    "X": """
        AcquisitionComments AcquisitionContextSequence AcquisitionProtocolDescription
        ActualHumanPerformersSequence AdditionalPatientHistory AddressTrial AdmissionID
        AdmittingDate AdmittingDiagnosesCodeSequence AdmittingDiagnosesDescription
        AdmittingTime Allergies AnnotationContentSequence Arbitrary AuthorObserverSequence
        BranchOfService CameraOwnerName CassetteID ClinicalTrialSeriesDescription
        ClinicalTrialSeriesID ClinicalTrialTimePointDescription
        CommentsOnThePerformedProcedureStep
        ConfidentialityConstraintOnPatientDataDescription
        ConsultingPhysicianIdentificationSequence ConsultingPhysicianName
        ContentCreatorIdentificationCodeSequence ContentSequence ContrastBolusStartTime
        ContrastBolusStopTime ContributionDescription CountryOfResidence
        CurrentObserverTrial CurrentPatientLocation CurveDate CurveTime
        CustodialOrganizationSequence DataSetTrailingPadding
        DateOfDocumentOrVerbalTransactionTrial DateOfLastCalibration
        DateOfLastDetectorCalibration DateOfSecondaryCapture DateTimeOfLastCalibration
        DerivationDescription DeviceDescription DeviceLabel DigitalSignatureDateTime
        DigitalSignaturesSequence DigitalSignatureUID DischargeDiagnosisDescription
        DistributionAddress DistributionName EthnicGroup ExpectedCompletionDateTime
        FirstTreatmentDate FrameComments GantryID GeneratorID HumanPerformerName
        HumanPerformerOrganization IconImageSequence IdentifyingComments ImageComments
        ImagePresentationComments ImagingServiceRequestComments Impressions
        InstanceCoercionDateTime InstitutionAddress InstitutionalDepartmentName
        InstitutionalDepartmentTypeCodeSequence InsurancePlanIdentification
        IntendedRecipientsOfResultsIdentificationSequence InterpretationApproverSequence
        InterpretationAuthor InterpretationDiagnosisDescription InterpretationIDIssuer
        InterpretationRecorder InterpretationText InterpretationTranscriber
        InterventionDrugStartTime InterventionDrugStopTime IssuerOfAdmissionID
        IssuerOfAdmissionIDSequence IssuerOfPatientID IssuerOfPatientIDQualifiersSequence
        IssuerOfServiceEpisodeID IssuerOfServiceEpisodeIDSequence LastMenstrualDate MAC
        MedicalAlerts MedicalRecordLocator MilitaryRank ModifiedAttributesSequence
        ModifiedImageDescription ModifyingDeviceID ModifyingDeviceManufacturer
        NameOfPhysiciansReadingStudy NamesOfIntendedRecipientsOfResults
        ObservationSubjectUIDTrial Occupation OperatorIdentificationSequence
        OrderCallbackPhoneNumber OrderCallbackTelecomInformation OrderEnteredBy
        OrderEntererLocation OriginalAttributesSequence OtherPatientIDs
        OtherPatientIDsSequence OtherPatientNames OverlayDate OverlayTime
        ParticipantSequence PatientAddress PatientAge PatientBirthDateInAlternativeCalendar
        PatientBirthName PatientBirthTime PatientComments
        PatientDeathDateInAlternativeCalendar PatientInstitutionResidence
        PatientInsurancePlanCodeSequence PatientMotherBirthName
        PatientPrimaryLanguageCodeSequence PatientPrimaryLanguageModifierCodeSequence
        PatientReligiousPreference PatientSize PatientState PatientTelecomInformation
        PatientTelephoneNumbers PatientTransportArrangements PatientWeight PerformedLocation
        PerformedProcedureStepDescription PerformedProcedureStepEndDate
        PerformedProcedureStepEndDateTime PerformedProcedureStepEndTime
        PerformedProcedureStepID PerformedProcedureStepStartDate
        PerformedProcedureStepStartDateTime PerformedProcedureStepStartTime
        PerformedStationAETitle PerformedStationGeographicLocationCodeSequence
        PerformedStationName PerformedStationNameCodeSequence
        PerformingPhysicianIdentificationSequence PerformingPhysicianName PersonAddress
        PersonTelecomInformation PersonTelephoneNumbers PhysicianApprovingInterpretation
        PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence
        PhysiciansReadingStudyIdentificationSequence PlateID PregnancyStatus PreMedication
        ProcedureStepCancellationDateTime RadiopharmaceuticalStartDateTime
        RadiopharmaceuticalStartTime RadiopharmaceuticalStopDateTime
        RadiopharmaceuticalStopTime ReasonForStudy ReasonForTheImagingServiceRequest
        ReasonForTheRequestedProcedure ReferencedDigitalSignatureSequence
        ReferencedPatientAliasSequence ReferencedPatientPhotoSequence
        ReferencedPatientSequence ReferencedSOPInstanceMACSequence ReferringPhysicianAddress
        ReferringPhysicianIdentificationSequence ReferringPhysicianTelephoneNumbers
        RegionOfResidence RequestAttributesSequence RequestedContrastAgent
        RequestedProcedureComments RequestedProcedureID RequestedProcedureLocation
        RequestingPhysician RequestingService ResponsibleOrganization ResponsiblePerson
        ResultsComments ResultsDistributionListSequence ResultsIDIssuer ReviewDate
        ReviewTime ScheduledHumanPerformersSequence ScheduledPatientInstitutionResidence
        ScheduledPerformingPhysicianIdentificationSequence ScheduledPerformingPhysicianName
        ScheduledProcedureStepDescription ScheduledProcedureStepEndDate
        ScheduledProcedureStepEndTime ScheduledProcedureStepLocation
        ScheduledProcedureStepModificationDateTime ScheduledProcedureStepStartDate
        ScheduledProcedureStepStartDateTime ScheduledProcedureStepStartTime
        ScheduledStationAETitle ScheduledStationGeographicLocationCodeSequence
        ScheduledStationName ScheduledStationNameCodeSequence ScheduledStudyLocation
        ScheduledStudyLocationAETitle SeriesDescription ServiceEpisodeDescription
        ServiceEpisodeID SmokingStatus SourceSerialNumber SpecialNeeds StudyArrivalDate
        StudyArrivalTime StudyComments StudyCompletionDate StudyCompletionTime
        StudyDescription StudyIDIssuer StudyReadDate StudyReadTime StudyVerifiedDate
        StudyVerifiedTime TextComments TextString TimezoneOffsetFromUTC TopicAuthor
        TopicKeywords TopicSubject TopicTitle TreatmentDate TreatmentTime
        VerifyingOrganization VisitComments
    """,
    "Z": """
        AccessionNumber ClinicalTrialCoordinatingCenterName ClinicalTrialProtocolName
        ClinicalTrialSiteID ClinicalTrialSiteName ClinicalTrialSubjectID
        ClinicalTrialSubjectReadingID ClinicalTrialTimePointID ContentCreatorName
        FillerOrderNumberImagingServiceRequest PatientBirthDate PatientID PatientName
        PatientSex PlacerOrderNumberImagingServiceRequest ReferringPhysicianName StudyDate
        StudyID StudyTime VerifyingObserverIdentificationCodeSequence
    """,
    "D": """
        ClinicalTrialProtocolEthicsCommitteeApprovalNumber
        ClinicalTrialProtocolEthicsCommitteeName ClinicalTrialProtocolID
        ClinicalTrialSponsorName GraphicAnnotationSequence PersonIdentificationCodeSequence
        PersonName VerifyingObserverName VerifyingObserverSequence
    """,
    "U": """
        ConcatenationUID ConceptualVolumeUID ContextGroupExtensionCreatorUID
        CreatorVersionUID DeviceUID DimensionOrganizationUID DoseReferenceUID
        DosimetricObjectiveUID FailedSOPInstanceUIDList FiducialUID FrameOfReferenceUID
        InstanceCreatorUID IrradiationEventUID LargePaletteColorLookupTableUID
        MediaStorageSOPInstanceUID ObservationUID PaletteColorLookupTableUID
        PresentationDisplayCollectionUID PresentationSequenceCollectionUID
        RadiopharmaceuticalAdministrationEventUID ReferencedConceptualVolumeUID
        ReferencedDoseReferenceUID ReferencedDosimetricObjectiveUID
        ReferencedFrameOfReferenceUID
        ReferencedGeneralPurposeScheduledProcedureStepTransactionUID
        ReferencedObservationUIDTrial ReferencedSOPInstanceUID
        ReferencedSOPInstanceUIDInFile RelatedFrameOfReferenceUID RequestedSOPInstanceUID
        SeriesInstanceUID SOPInstanceUID SOPInstanceUIDOfConcatenationSource
        SourceConceptualVolumeUID SourceFrameOfReferenceUID SpecimenUID
        StorageMediaFileSetUID StudyInstanceUID SynchronizationFrameOfReferenceUID TargetUID
        TemplateExtensionCreatorUID TemplateExtensionOrganizationUID TrackingUID
        TransactionUID TreatmentSessionUID UID
    """,
    "X/Z": """
        AcquisitionDate AcquisitionTime PatientSexNeutered ReferencedStudySequence
        RequestedProcedureDescription ReviewerName RTPlanDate RTPlanTime StructureSetDate
        StructureSetTime
    """,
    "X/D": """
        AcquisitionDateTime AcquisitionDeviceProcessingDescription AcquisitionProtocolName
        ContributionDateTime DecayCorrectionDateTime DetectorID EndAcquisitionDateTime
        FrameAcquisitionDateTime FrameReferenceDateTime InstanceCreationDate
        ObservationDateTime ProtocolName SeriesDate SeriesTime StartAcquisitionDateTime
    """,
    "Z/D": """
        ContentDate ContentTime ContrastBolusAgent
    """,
    "X/Z/D": """
        DeviceSerialNumber InstanceCreationTime InstitutionCodeSequence InstitutionName
        OperatorsName ReferencedPerformedProcedureStepSequence SoftwareVersions StationName
    """,
    "X/Z/U*": """
        ReferencedImageSequence SourceImageSequence
    """,
}

# Dates and times that no date option retains: they describe the patient, not the timeline.
NOT_LONGITUDINAL = frozenset({"PatientBirthDate", "PatientBirthTime"})


def resolve(code: str) -> Action:
    """Map a standard action code (simple or compound) to the action medsight applies."""
    if code in _COMPOUND:
        return _COMPOUND[code]
    return Action(code)


@dataclass(frozen=True)
class Profile:
    """A named de-identification profile: the standard's codes and the resolved actions."""

    name: str
    title: str
    code: tuple[str, str, str]  # (CodeValue, CodingSchemeDesignator, CodeMeaning), CID 7050
    codes: Mapping[str, str]
    actions: Mapping[str, Action] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "actions", {k: resolve(c) for k, c in self.codes.items()})

    def action(self, keyword: str) -> Action | None:
        """The action for ``keyword``, or None when the table does not list it."""
        return self.actions.get(keyword)


def _expand(table: Mapping[str, str]) -> dict[str, str]:
    return {keyword: code for code, block in table.items() for keyword in block.split()}


BASIC = Profile(
    name="basic",
    title="Basic Application Level Confidentiality Profile",
    code=("113100", "DCM", "Basic Application Confidentiality Profile"),
    codes=_expand(_BASIC_TABLE),
)

PROFILES: dict[str, Profile] = {BASIC.name: BASIC}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; a :class:`MedsightError` names the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise MedsightError(f"unknown de-identification profile {name!r} (known: {known})") from None
